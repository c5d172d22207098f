r"""The paper's Table 1 baselines: first-order hypergradient rules in TLR's K-step framework.

Section 3 of the paper compares TLR's Newton step with the first-order hypergradient update of Baydin et
al. (2018) moved into the same framework: every K steps the window direction
``u_k = (w_snapshot - w_now) / ᾱ_k`` is formed exactly as TLR forms it, ``g_k = u_k / K`` is its
per-step mean (see "What g is" below), and the rate follows

* additive:        ``α_k = α_{k-1} + η <g_{k-1}, g_{k-2}>``  (g: the per-step mean, see below)
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

What g is (``g="mean"``, the default, which Table 1 uses). TLR's window direction
``u_k = (w_snapshot - w_now) / ᾱ_k`` is the *sum* of the window's K per-step directions; the paper's
formula comes from the per-step rule of Baydin et al., where g is one step's gradient. Read as the sum,
``<u_{k-1}, u_{k-2}>`` is about K² times a per-step product, so η = 0.1 drives the rate into the ×100
cap and the run diverges; read as the per-step mean ``g_k = u_k / K`` (``a`` over K²
in :class:`~ntlr.WindowStats` terms), the paper's η values behave as it says. The cosine of the
multiplicative rule is the same under both readings. Measured on ``digits_mlp`` (10 epochs, p = 0.2,
i.e. K = 18, 4 and 2 at batch 16, 64 and 128; α0 = 1e-1, 1e-2, 1e-3: nine runs per η), final training
loss:

* the entry's SGD (momentum 0.8, weight decay 5e-4): under ``"sum"`` all 18 runs diverge, for η = 0.1
  and for η = 0.01 (each run hits the ×100 or ×1/100 cap in 1 to 37 windows before the loss
  overflows). Under ``"mean"``, η = 0.01 trains in all nine (0.0025 … 0.014, test accuracy 98.1 …
  99.2%); η = 0.1 trains from α0 = 0.1 at batch 16 (0.0026), sends the rate to 1.4 and 2.3 from the
  smaller α0 there (loss stuck at 2.4) and diverges at batch 64 and 128: the momentum makes the
  direction about 1/(1 − 0.8) = 5 times the mean gradient, so the product is 25 times the per-step
  rule's.
* plain SGD (``momentum=0``): under ``"mean"`` all 18 runs train, η = 0.1 (0.015 … 0.061) ahead of
  η = 0.01 (0.032 … 0.18) in every cell, as in the paper's Table 1 (1e-1 the lower loss averaged over
  α0); under ``"sum"``, η = 0.1 diverges at batch 16 (K = 18, a 324 times larger product) and η = 0.01
  stalls there from α0 = 1e-3 (1.65).

So ``"mean"`` is the reading under which the paper's η = 0.1 and 0.01 make sense; ``"sum"`` stays for
comparison (``g="sum"``; it equals ``"mean"`` when K = 1).

The norm ``||g_{k-1}||`` the cosine needs is summed over this process's tensors: the multiplicative rule
supports replicated (DDP) and single-process parameters, not sharded ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ntlr import TLR, MetaStepDecision, Status, WindowStats
from ntlr.rules import RuleState, check_max_factor

from .spec import BuiltOptimizer, OptimizerSpec, check_positive
from .standard import SGD_HYPERPARAMETERS, make_sgd
from .trainable import WINDOW_HYPERPARAMETERS, split_window_overrides, tlr_built, window_kwargs

__all__ = ["DEFAULT_ETA", "KINDS", "SPECS", "WindowHypergradient"]

KINDS = ("additive", "multiplicative")
DEFAULT_ETA = {"additive": 1e-1, "multiplicative": 1e-4}
# How g is read from the window: "sum" is the window's direction as TLR forms it (the K-step
# displacement over the mean rate, a sum of K per-step directions); "mean" is that over K.
READINGS = ("mean", "sum")
DEFAULT_READING = "mean"


@dataclass(frozen=True)
class WindowHypergradient:
    """The first-order hypergradient rule of the paper's Table 1, as a TLR rule.

    Args:
        kind: ``"additive"`` or ``"multiplicative"``.
        eta: the meta learning rate η > 0.
        max_factor: the per-meta-step factor is clipped to ``[1 / max_factor, max_factor]``.
        g: ``"mean"`` (g is the window's per-step mean direction, the displacement over ᾱ_k divided by
            K) or ``"sum"`` (the displacement over ᾱ_k itself). The additive rule's ``<g, g'>`` is K²
            times larger under ``"sum"``; the cosine of the multiplicative rule is the same under both.
    """

    kind: str
    eta: float
    max_factor: float = 100.0
    g: str = DEFAULT_READING
    uses_loss: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        check_positive("eta", self.eta)
        check_max_factor("max_factor", self.max_factor)
        if self.g not in READINGS:
            raise ValueError(f"g must be one of {READINGS}, got {self.g!r}")

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
            # a = <u_{k-1}, u_{k-2}> of the window directions (sums of K per-step directions).
            dot = stats.a / stats.steps**2 if self.g == "mean" else stats.a
            factor = (stats.lr + self.eta * dot) / stats.lr
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
        wrapper = split_window_overrides(overrides, (*WINDOW_HYPERPARAMETERS, "eta", "g"))
        rule = WindowHypergradient(
            kind,
            wrapper.pop("eta", DEFAULT_ETA[kind]),
            wrapper.pop("max_factor", 100.0),
            wrapper.pop("g", DEFAULT_READING),
        )
        inner = make_sgd(params, lr, overrides)
        return tlr_built(TLR(inner, rule=rule, **window_kwargs(wrapper, steps_per_epoch)))

    return build


SPECS = (
    OptimizerSpec(
        name="hypergrad_add",
        description=(
            "K-step additive hypergradient α_k = α_{k-1} + η<g_{k-1}, g_{k-2}> (Table 1), η=0.1, "
            "g the window's per-step mean direction"
        ),
        build=_builder("additive"),
        default_lr=0.1,
        hyperparameters=("eta", "g", *WINDOW_HYPERPARAMETERS, *SGD_HYPERPARAMETERS),
    ),
    OptimizerSpec(
        name="hypergrad_mult",
        description="K-step multiplicative hypergradient α_k = α_{k-1}[1 + η cos(g_{k-1}, g_{k-2})], η=1e-4",
        build=_builder("multiplicative"),
        default_lr=0.1,
        hyperparameters=("eta", "g", *WINDOW_HYPERPARAMETERS, *SGD_HYPERPARAMETERS),
    ),
)
