"""The update math of TLR as plain functions.

Everything here is stateless: the :class:`ntlr.TLR` shell gathers the tensors of a param group and calls
these. Two paths compute the same thing: a per-tensor loop (the ground truth) and a ``torch._foreach``
path that batches the elementwise work into multi-tensor kernels on accelerators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "MetaStepDecision",
    "WindowLoss",
    "close_window_",
    "guarded_factor",
    "newton_factor",
    "restart_window_",
]

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _dot(x: Tensor, y: Tensor) -> Tensor:
    # Half-precision dots accumulate badly over millions of entries; upcast (a transient copy, paid only
    # at a meta-step).
    if x.dtype in _HALF_DTYPES:
        x, y = x.float(), y.float()
    return torch.dot(x.reshape(-1), y.reshape(-1))


def _sum_dtype(device: torch.device) -> torch.dtype:
    # MPS has no float64; everywhere else accumulate the per-tensor partial sums in float64.
    return torch.float32 if device.type == "mps" else torch.float64


def close_window_(
    params: list[Tensor],
    snapshots: list[Tensor],
    prev_updates: list[Tensor],
    lr_mean: float,
    *,
    foreach: bool = False,
) -> Tensor:
    """Close a K-step window: turn ``snapshots`` into this window's update direction, in place.

    ``u_new = (snapshot - w) / lr_mean`` is written into ``snapshots``; the returned 2-vector holds
    ``a = <u_old, u_new>`` and ``b = <u_old, u_old>`` summed over the tensors (u_old = ``prev_updates``),
    still on the device, so the caller decides when to synchronise.
    """
    if not params:
        return torch.zeros(2, dtype=torch.float64)
    if foreach:
        torch._foreach_sub_(snapshots, params)
        torch._foreach_div_(snapshots, lr_mean)
    else:
        for snap, w in zip(snapshots, params):
            snap.sub_(w).div_(lr_mean)
    dtype = _sum_dtype(params[0].device)
    a = torch.stack([_dot(old, new) for old, new in zip(prev_updates, snapshots)]).to(dtype).sum()
    b = torch.stack([_dot(old, old) for old in prev_updates]).to(dtype).sum()
    return torch.stack([a, b])


def restart_window_(params: list[Tensor], snapshots: list[Tensor], *, foreach: bool = False) -> None:
    """Start the next window: copy the current weights into the snapshot buffers."""
    if not params:
        return
    if foreach:
        torch._foreach_copy_(snapshots, params)
    else:
        for snap, w in zip(snapshots, params):
            snap.copy_(w)


@dataclass(frozen=True)
class MetaStepDecision:
    """What one meta-step does to a group's rate: the multiplicative ``factor`` and why."""

    factor: float
    # "updated" | "capped" | "first_window" | "nonpositive_denominator" | "nonfinite" | "loss_guard"
    status: str

    @property
    def skipped(self) -> bool:
        return self.status not in ("updated", "capped", "loss_guard")


def newton_factor(
    a: float, b: float, *, gamma: float, max_factor: float, first_window: bool = False
) -> MetaStepDecision:
    """The damped Newton step of Eq. 8 as a multiplicative factor on the learning rate.

    With the K-step approximation, dL/dα ∝ -a and d²L/dα² ∝ b - a, so the damped Newton step is
    ``α ← α (1 + γ a / (b - a))``. A non-positive second derivative (b - a ≤ 0) would point the Newton step
    uphill or to infinity; the paper then keeps the rate, and so do we. With b - a > 0 and γ ≤ 1 the factor
    lies in (1 - γ, ∞), so it is always positive; it is capped at ``max_factor``.
    """
    if first_window:
        return MetaStepDecision(1.0, "first_window")
    if not (math.isfinite(a) and math.isfinite(b)):
        return MetaStepDecision(1.0, "nonfinite")
    denominator = b - a
    if not denominator > 0.0:
        return MetaStepDecision(1.0, "nonpositive_denominator")
    factor = 1.0 + gamma * a / denominator
    if not (math.isfinite(factor) and factor > 0.0):
        # Only reachable through overflow or γ at its bound with a/(b-a) rounding to -1.
        return MetaStepDecision(1.0, "nonfinite")
    if factor > max_factor:
        return MetaStepDecision(max_factor, "capped")
    return MetaStepDecision(factor, "updated")



@dataclass(frozen=True)
class WindowLoss:
    """A window's mean training loss and the squared standard error of that mean (∞ from one loss)."""

    mean: float
    variance: float

    @classmethod
    def from_sums(cls, total: float, total_sq: float, count: int) -> WindowLoss | None:
        """From the sum and the sum of squares of ``count`` per-step losses; ``None`` when ``count`` is 0."""
        if count <= 0:
            return None
        mean = total / count
        if count == 1:
            return cls(mean, math.inf)
        # Sample variance over count - 1, clamped: rounding can make it slightly negative.
        sample_variance = max(total_sq - count * mean * mean, 0.0) / (count - 1)
        return cls(mean, sample_variance / count)


def guarded_factor(
    decision: MetaStepDecision,
    loss_now: WindowLoss | None,
    loss_prev: WindowLoss | None,
    *,
    gamma: float,
    tolerance: float = 0.0,
    z: float = 1.0,
) -> MetaStepDecision:
    """The loss guard (beyond the paper): overrule the factor when the window's mean loss rose.

    The Newton rule reads only the weights, and consecutive windows can stay aligned (``a > 0``) while the
    loss climbs (weight-decay drift, momentum), so it may keep raising the rate into a divergence; with an
    even window length a period-two oscillating divergence even gives ``b - a < 0`` and the rate is kept.
    A decrease test on consecutive windows' mean losses, in the spirit of Armijo's condition, catches both.
    The loss *rose* when ``now.mean > prev.mean + tolerance * |prev.mean|`` (or ``now.mean`` is not finite
    while ``prev.mean`` is), and rose *significantly* when moreover
    ``now.mean - prev.mean > z * sqrt(now.variance + prev.variance)`` (the standard errors of the two
    means: mini-batch noise alone rarely passes it). Then, with ``shrink = max(1 - γ, 1/2)`` (``1 - γ`` is
    the largest decrease the Newton rule itself can make; the floor keeps γ = 1 from zeroing the rate):

    * a significant rise, or any rise after a skipped Newton step (``nonpositive_denominator`` or
      ``nonfinite``), shrinks the rate: ``factor = min(factor, shrink)``;
    * any other rise vetoes an increase: ``factor = min(factor, 1)``.

    A factor the guard changed gets the status ``loss_guard``. ``None`` for either window (no loss was
    observed in it, or there is no previous window), a non-finite previous mean and the ``first_window``
    decision pass the decision through unchanged.
    """
    if decision.status == "first_window" or loss_now is None or loss_prev is None:
        return decision
    if not math.isfinite(loss_prev.mean):
        return decision  # a diverged window sets no bar to compare against
    rise = loss_now.mean - loss_prev.mean
    if rise <= tolerance * abs(loss_prev.mean):  # NaN and +inf fail this: they count as rises
        return decision
    significant = not rise <= z * math.sqrt(loss_now.variance + loss_prev.variance)
    if significant or decision.status not in ("updated", "capped"):
        factor = min(decision.factor, max(1.0 - gamma, 0.5))
    else:
        factor = min(decision.factor, 1.0)
    if factor == decision.factor:
        return decision
    return MetaStepDecision(factor, "loss_guard")
