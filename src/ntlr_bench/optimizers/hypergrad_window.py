r"""The paper's Table 1 baselines: first-order hypergradient rules in TLR's K-step framework.

Section 3 of the paper compares TLR's Newton step with the first-order hypergradient update of Baydin et
al. (2018) moved into the same framework: every K steps the window direction
``g_k = (w_snapshot - w_now) / ᾱ_k`` is formed exactly as TLR forms it, and the rate follows

* additive:        ``α_k = α_{k-1} + η <g_{k-1}, g_{k-2}>``
* multiplicative:  ``α_k = α_{k-1} [1 + η cos(g_{k-1}, g_{k-2})]``

Both are :class:`ntlr.TLR` with the factor rule swapped (``TLR._rate_factor``), so the windows, the
lr-mean normalisation, schedulers, history records and state dicts are TLR's own.

Safeguards (not in the paper, which does not say what it did): the per-meta-step factor
``α_k / α_{k-1}`` is clipped to ``[1 / max_factor, max_factor]`` (TLR's 100 by default). For the additive
rule the lower clip keeps α positive when ``η <g, g'>`` is more negative than ``-α``; for the
multiplicative one it only matters with η ≥ 1. A clipped step is recorded with status ``capped``.

Defaults for η: Table 1 reports the two best η of ``{1e-1, ..., 1e-5}`` for each rule on CIFAR100 + WRN-16-4:
1e-1 and 1e-2 for the additive rule (1e-1 has the lower loss averaged over α0), 1e-4 and 1e-5 for the
multiplicative one; we default to 1e-1 and 1e-4. With 1e-5 the multiplicative rule changes α by at most
0.001% per window, i.e. it is plain SGD; 1e-4 is the smallest η under which it still adapts.

The norm ``||g_{k-1}||`` the cosine needs is summed over this process's tensors: the multiplicative rule
supports replicated (DDP) and single-process parameters, not sharded ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from ntlr import TLR, MetaStepDecision
from ntlr.tlr import FACTOR, META_STEPS, PREV_UPDATE

from .spec import BuiltOptimizer, OptimizerSpec, check_positive
from .standard import SGD_HYPERPARAMETERS, make_sgd
from .trainable import WINDOW_HYPERPARAMETERS, split_window_overrides, tlr_built, window_kwargs

__all__ = ["RULES", "SPECS", "WindowHypergradient"]

RULES = ("additive", "multiplicative")
DEFAULT_ETA = {"additive": 1e-1, "multiplicative": 1e-4}


class WindowHypergradient(TLR):
    """TLR's K-step windows with the first-order hypergradient rule of the paper's Table 1.

    Args:
        optimizer: the inner optimizer (the rate it trains is each group's ``lr``, as for TLR).
        rule: ``"additive"`` or ``"multiplicative"``.
        eta: the meta learning rate η > 0.
        update_every, steps_per_epoch, p, max_factor, foreach: as for :class:`ntlr.TLR`.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        rule: str,
        eta: float,
        update_every: int | None = None,
        steps_per_epoch: int | None = None,
        p: float = 0.2,
        max_factor: float = 100.0,
        foreach: bool | None = None,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.eta = check_positive("eta", eta)
        self.rule = rule
        # gamma is TLR's Newton damping, unused by these rules; 1.0 passes TLR's validation.
        super().__init__(
            optimizer,
            update_every=update_every,
            steps_per_epoch=steps_per_epoch,
            p=p,
            gamma=1.0,
            max_factor=max_factor,
            foreach=foreach,
        )

    def __repr__(self) -> str:
        return (
            f"WindowHypergradient(rule={self.rule!r}, eta={self.eta}, update_every={self.update_every}, "
            f"max_factor={self.max_factor}, optimizer={self.optimizer!r})"
        )

    def _rate_factor(self, group: dict[str, Any], a: float, b: float) -> MetaStepDecision:
        if group[META_STEPS] == 0:
            return MetaStepDecision(1.0, "first_window")
        if not (math.isfinite(a) and math.isfinite(b)):
            return MetaStepDecision(1.0, "nonfinite")
        if self.rule == "additive":
            alpha = float(group["lr"]) * group[FACTOR]
            if not alpha > 0.0:
                return MetaStepDecision(1.0, "nonfinite")
            factor = (alpha + self.eta * a) / alpha
        else:
            norms = b * self._squared_norm_of_new_direction(group)
            cosine = a / math.sqrt(norms) if norms > 0.0 else 0.0
            factor = 1.0 + self.eta * cosine
        if not math.isfinite(factor):
            return MetaStepDecision(1.0, "nonfinite")
        clipped = min(max(factor, 1.0 / self.max_factor), self.max_factor)
        return MetaStepDecision(clipped, "updated" if clipped == factor else "capped")

    @torch.no_grad()
    def _squared_norm_of_new_direction(self, group: dict[str, Any]) -> float:
        # _rate_factor runs after the buffers turned over: PREV_UPDATE now holds g_{k-1}.
        squares = [
            self.state[param][PREV_UPDATE].float().square().sum(dtype=torch.float64)
            for param in group["params"]
            if PREV_UPDATE in self.state.get(param, ())
        ]
        return float(torch.stack(squares).sum()) if squares else 0.0


def _builder(rule: str):
    def build(
        params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
    ) -> BuiltOptimizer:
        wrapper = split_window_overrides(overrides, (*WINDOW_HYPERPARAMETERS, "eta"))
        wrapper.setdefault("eta", DEFAULT_ETA[rule])
        inner = make_sgd(params, lr, overrides)
        return tlr_built(WindowHypergradient(inner, rule=rule, **window_kwargs(wrapper, steps_per_epoch)))

    return build


SPECS = (
    OptimizerSpec(
        name="hypergrad_add",
        description="K-step additive hypergradient α_k = α_{k-1} + η<g_{k-1}, g_{k-2}> (Table 1), η=0.1",
        build=_builder("additive"),
        default_lr=0.1,
        hyperparameters=("eta", *WINDOW_HYPERPARAMETERS, *SGD_HYPERPARAMETERS),
    ),
    OptimizerSpec(
        name="hypergrad_mult",
        description="K-step multiplicative hypergradient α_k = α_{k-1}[1 + η cos(g_{k-1}, g_{k-2})], η=1e-4",
        build=_builder("multiplicative"),
        default_lr=0.1,
        hyperparameters=("eta", *WINDOW_HYPERPARAMETERS, *SGD_HYPERPARAMETERS),
    ),
)
