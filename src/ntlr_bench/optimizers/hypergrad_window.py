r"""The paper's Table 1 baselines: first-order hypergradient rules in TLR's K-step framework.

Section 3 of the paper compares TLR's Newton step with the first-order hypergradient update of Baydin et
al. (2018) moved into the same framework: every K steps the window direction
``g_k = (w_snapshot - w_now) / ᾱ_k`` is formed exactly as TLR forms it, and the rate follows

* additive:        ``α_k = α_{k-1} + η <g_{k-1}, g_{k-2}>``
* multiplicative:  ``α_k = α_{k-1} [1 + η cos(g_{k-1}, g_{k-2})]``

Both are rules for :class:`ntlr.TLR` (``TLR(optimizer, rule=WindowHypergradient("additive", eta))``), so
the windows, the lr-mean normalisation, schedulers, history records and state dicts are TLR's own, and the
norms the cosine needs come in the meta-step's one host sync (``c = ||g_{k-1}||²``).

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
from dataclasses import dataclass
from typing import Any

from ntlr import TLR, MetaStepDecision, Status, WindowStats
from ntlr.rules import RuleState

from .spec import BuiltOptimizer, OptimizerSpec, check_positive
from .standard import SGD_HYPERPARAMETERS, make_sgd
from .trainable import WINDOW_HYPERPARAMETERS, split_window_overrides, tlr_built, window_kwargs

__all__ = ["DEFAULT_ETA", "KINDS", "SPECS", "WindowHypergradient"]

KINDS = ("additive", "multiplicative")
DEFAULT_ETA = {"additive": 1e-1, "multiplicative": 1e-4}


@dataclass(frozen=True)
class WindowHypergradient:
    """The first-order hypergradient rule of the paper's Table 1, as a TLR rule.

    Args:
        kind: ``"additive"`` or ``"multiplicative"``.
        eta: the meta learning rate η > 0.
        max_factor: the per-meta-step factor is clipped to ``[1 / max_factor, max_factor]``.
    """

    kind: str
    eta: float
    max_factor: float = 100.0
    uses_loss: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        check_positive("eta", self.eta)
        if not (isinstance(self.max_factor, int | float) and self.max_factor >= 1.0):
            raise ValueError(f"max_factor must be a real number >= 1, got {self.max_factor!r}")

    @property
    def name(self) -> str:
        return f"hypergrad_{self.kind}"

    def decide(self, stats: WindowStats, state: RuleState) -> MetaStepDecision:
        if stats.window == 0:
            return MetaStepDecision(1.0, Status.FIRST_WINDOW)
        if not stats.finite:
            return MetaStepDecision(1.0, Status.NONFINITE)
        if self.kind == "additive":
            if not stats.lr > 0.0:
                return MetaStepDecision(1.0, Status.NONFINITE)
            factor = (stats.lr + self.eta * stats.a) / stats.lr
        else:
            norms = stats.b * stats.c
            cosine = stats.a / math.sqrt(norms) if norms > 0.0 else 0.0
            factor = 1.0 + self.eta * cosine
        if not math.isfinite(factor):
            return MetaStepDecision(1.0, Status.NONFINITE)
        clipped = min(max(factor, 1.0 / self.max_factor), self.max_factor)
        return MetaStepDecision(clipped, Status.UPDATED if clipped == factor else Status.CAPPED)


def _builder(kind: str):
    def build(
        params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
    ) -> BuiltOptimizer:
        wrapper = split_window_overrides(overrides, (*WINDOW_HYPERPARAMETERS, "eta"))
        rule = WindowHypergradient(
            kind, wrapper.pop("eta", DEFAULT_ETA[kind]), wrapper.pop("max_factor", 100.0)
        )
        inner = make_sgd(params, lr, overrides)
        return tlr_built(TLR(inner, rule=rule, **window_kwargs(wrapper, steps_per_epoch)))

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
