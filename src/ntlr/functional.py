"""The update math of TLR as plain functions.

Everything here is stateless: the :class:`ntlr.TLR` shell gathers the tensors of a param group and calls
these. Two paths compute the same thing: a per-tensor loop (the ground truth) and a ``torch._foreach``
path that batches the elementwise work into multi-tensor kernels on accelerators.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "LossSums",
    "MetaStepDecision",
    "Status",
    "WindowLoss",
    "advance_window_",
    "anneal_multiplier",
    "fusable_device",
    "guarded_factor",
    "host_loss_sums",
    "loss_window_sums",
    "newton_factor",
    "newton_factor_on_device",
    "rescale_cached_rates_",
    "reset_inner_momentum_",
    "restart_inner_statistics_",
    "restart_window_",
    "rollback_window_",
    "stack_losses",
    "undo_kept_window_",
    "window_inner_products",
    "window_partials_and_directions",
    "window_products_and_directions",
]

_HALF_DTYPES = (torch.float16, torch.bfloat16)
# The inner optimizers' first-moment buffers (torch.optim's names): a rollback clears them, since the
# velocity they hold is what carried the weights into the rolled-back window.
MOMENTUM_KEYS = ("momentum_buffer", "exp_avg")
# The Adam family's gradient statistics, whose bias correction counts from the state's "step".
SECOND_MOMENT_KEYS = ("exp_avg_sq", "max_exp_avg_sq", "exp_inf")


def _flat(x: Tensor) -> Tensor:
    """``x`` as the 1-D real vector its dot products read (a tensor that is one already passes as is)."""
    # Re<x, y> of complex tensors is the dot of their real views; torch.dot would not conjugate.
    if x.is_complex():
        x = torch.view_as_real(x)
    # Half-precision dots accumulate badly over millions of entries; upcast (a transient copy, paid only
    # at a meta-step).
    if x.dtype in _HALF_DTYPES:
        x = x.float()
    # Each call costs a few µs on a small model's meta-step: skip the reshape where it changes nothing.
    return x if x.dim() == 1 else x.reshape(-1)


def _sum_dtype(device: torch.device) -> torch.dtype:
    # MPS has no float64; everywhere else accumulate the per-tensor partial sums in float64.
    return torch.float32 if device.type == "mps" else torch.float64


def window_inner_products(
    params: list[Tensor],
    snapshots: list[Tensor],
    prev_updates: list[Tensor],
    lr_mean: float,
    *,
    foreach: bool = False,
    old_scale: float = 1.0,
) -> Tensor:
    """The window's inner products, leaving every buffer as it is.

    With ``u_new = (snapshot - w) / lr_mean`` and ``u_old = prev_updates / old_scale``, returns the
    3-vector ``[a, b, c] = [<u_old, u_new>, <u_old, u_old>, <u_new, u_new>]`` summed over the tensors,
    still on the device (the caller decides when to synchronise). The dots are taken over the raw
    displacements ``snapshot - w`` and the buffers as stored, and the sums scaled after (one pass over
    the weights less than dividing first). The displacement is formed in a temporary: one tensor at a
    time on the loop path, all at once on the foreach path (a transient copy of the group's weights).
    The buffers are untouched so that the decision can still roll the weights back to the snapshot.
    """
    return window_products_and_directions(
        params, snapshots, prev_updates, lr_mean, foreach=foreach, old_scale=old_scale
    )[0]


def window_scales(lr_mean: float | Tensor, old_scale: float | Tensor = 1.0) -> tuple[Any, Any, Any]:
    """What the raw sums ``<p, d>``, ``<p, p>``, ``<d, d>`` (``p`` the stored ``u_old`` buffers, ``d`` the
    displacement ``snapshot - w``) are multiplied by to give ``a``, ``b`` and ``c``: ``u_new = d /
    lr_mean`` and ``u_old = p / old_scale``. Floats, or tensors where a rate is one."""
    return 1.0 / (old_scale * lr_mean), 1.0 / (old_scale * old_scale), 1.0 / (lr_mean * lr_mean)


def window_products_and_directions(
    params: list[Tensor],
    snapshots: list[Tensor],
    prev_updates: list[Tensor],
    lr_mean: float | Tensor,
    *,
    foreach: bool = False,
    old_norm: bool = True,
    weights: bool = False,
    old_scale: float | Tensor = 1.0,
    fused: bool = False,
) -> tuple[Tensor, list[Tensor] | None]:
    """:func:`window_inner_products`, and on the foreach path the displacements ``snapshot - w`` it
    formed (``None`` on the loop path), which :func:`advance_window_` then copies instead of forming them
    again.

    ``old_norm=False`` leaves ``b`` out (0 in its place): the caller knows it already, since a kept
    window's ``c`` is the next window's ``b`` (``u_old`` is a copy of that ``u_new``: the same bits).
    ``weights=True`` appends a fourth sum, ``<s, s>`` of the snapshot (the weights at the window's
    start), for a rule that weighs the window's displacement against the weights it moved.
    """
    width = 4 if weights else 3
    if not params:
        return torch.zeros(width, dtype=torch.float64), None
    rows, news = _window_parts(params, snapshots, prev_updates, foreach, old_norm, weights, fused)
    a_parts = rows[0]
    if not old_norm:
        rows[1] = [torch.zeros((), dtype=a_parts[0].dtype, device=a_parts[0].device)] * len(a_parts)
    # One stack and one sum for all rows: each row sums in the order a per-row sum would.
    parts = torch.stack([part for row in rows for part in row]).to(_sum_dtype(params[0].device))
    raw = parts.view(width, len(a_parts)).sum(1)
    # Each sum times its scale, a number or a 0-dim tensor: never a tensor made of host numbers, which on
    # an accelerator is a host-to-device copy that CUDA counts as a sync (host_sync=False promises none).
    scaled = [raw[i] * scale for i, scale in enumerate(window_scales(lr_mean, old_scale))]
    if weights:
        scaled.append(raw[3])
    return torch.stack(scaled), news


def window_partials_and_directions(
    params: list[Tensor],
    snapshots: list[Tensor],
    prev_updates: list[Tensor],
    *,
    foreach: bool = False,
    old_norm: bool = True,
    weights: bool = False,
    fused: bool = False,
) -> tuple[list[Tensor], list[Tensor] | None]:
    """:func:`window_products_and_directions` before the sum over the tensors and before the scaling:
    the per-tensor partial sums as 0-dim tensors, in rows of ``len(params)``: ``<p, d>`` first, then
    ``<p, p>`` (only with ``old_norm``), ``<d, d>``, and ``<s, s>`` (only with ``weights``), in the dtype of
    the dots (float32 for float32 and half-precision tensors), on the tensors' device. The row sums times
    :func:`window_scales` are ``a``, ``b`` and ``c``.

    For a caller that adds them up on the host, where they travel anyway: the float64 sums of
    :func:`window_products_and_directions` cost a stack, a conversion, a sum and the placeholder zeros of
    ``b``, fixed per-call costs that are much of a small model's meta-step.
    """
    if not params:
        return [], None
    rows, news = _window_parts(params, snapshots, prev_updates, foreach, old_norm, weights, fused)
    return [part for row in rows for part in row], news


# The fused meta-step (TLR(fused=True)): each tensor's sums in one pass over (u_old, snapshot, w), and its
# advance in one more, compiled by torch.compile (Inductor's C++) on first use. CPU tensors of these
# dtypes only; the others go the loop path's way (half precision, complex; and GPU tensors: Inductor's
# Triton reductions over a dynamic length ran 9-25x slower than the loop path's on an H200, docs/gpu.md).
_FUSED_DTYPES = (torch.float32, torch.float64)
_FUSED: dict[str, Callable[..., Any]] = {}


def _fused_sums_eager(old: Tensor, snap: Tensor, w: Tensor) -> Tensor:
    # All four sums always, in the one pass: no flag to specialise on (each would be a recompile), and the
    # two a caller may not want (<p, p>, <s, s>) read nothing more.
    d = snap - w
    return torch.stack([(old * d).sum(), (old * old).sum(), (d * d).sum(), (snap * snap).sum()])


def _fused_advance_eager(old: Tensor, snap: Tensor, w: Tensor) -> None:
    old.copy_(snap - w)
    snap.copy_(w)


def _fused(name: str) -> Callable[..., Any]:
    kernel = _FUSED.get(name)
    if kernel is None:
        eager: Callable[..., Any] = _fused_sums_eager if name == "sums" else _fused_advance_eager
        # dynamic: one kernel for every length (the tensors are passed flat). Past Dynamo's recompile
        # limit (many dtypes or strides) a call runs the same function eagerly rather than failing.
        compiled = torch.compile(eager, dynamic=True)

        def guarded(*args: Tensor) -> Any:
            try:
                return compiled(*args)
            except Exception as error:
                # No working Inductor here (no C++ compiler, ...): the same math, eagerly, from now on. A
                # genuine error in the arguments raises again from the eager call.
                warnings.warn(
                    f"TLR(fused=True): torch.compile could not build the fused meta-step "
                    f"({type(error).__name__}: {str(error)[:200]}); it runs eagerly from now on (the same "
                    "sums, without the fusion's saving)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                _FUSED[name] = eager
                return eager(*args)

        kernel = _FUSED[name] = guarded
    return kernel


def fusable_device(tensor: Tensor) -> bool:
    """Whether ``TLR(fused=True)`` compiles kernels for tensors on this device: the CPU's only. On GPUs the
    foreach path is already near the memory floor, and Inductor's reductions over dynamic lengths run
    there an order of magnitude slower (docs/gpu.md)."""
    return tensor.device.type == "cpu"


def _fuses(*tensors: Tensor) -> bool:
    return all(t.dtype in _FUSED_DTYPES and fusable_device(t) for t in tensors)


def _fused_window_parts(
    params: list[Tensor], snapshots: list[Tensor], prev_updates: list[Tensor], old_norm: bool, weights: bool
) -> list[list[Tensor]]:
    rows: list[list[Tensor]] = [[], [], [], []]
    wanted = [0, 1, 2, 3] if old_norm else [0, 2, 3]
    wanted = wanted if weights else wanted[:-1]
    for old, snap, w in zip(prev_updates, snapshots, params):
        if _fuses(old, snap, w):
            sums = _fused("sums")(old.reshape(-1), snap.reshape(-1), w.reshape(-1)).unbind()
            for index in wanted:
                rows[index].append(sums[index])
            continue
        parts, _ = _window_parts([w], [snap], [old], False, old_norm, weights)
        for row, part in zip(rows, parts):
            row.extend(part)
    return rows


def _window_parts(
    params: list[Tensor],
    snapshots: list[Tensor],
    prev_updates: list[Tensor],
    foreach: bool,
    old_norm: bool,
    weights: bool,
    fused: bool = False,
) -> tuple[list[list[Tensor]], list[Tensor] | None]:
    """The per-tensor raw dots as rows ``[<p, d>, <p, p>, <d, d>, <s, s>]`` (the second and the last
    empty when not asked for), and the foreach path's displacements ``d = snapshot - w``."""
    if fused:
        return _fused_window_parts(params, snapshots, prev_updates, old_norm, weights), None
    news = torch._foreach_sub(snapshots, params) if foreach else None
    a_parts, b_parts, c_parts, w_parts = [], [], [], []
    for i, (old, snap, w) in enumerate(zip(prev_updates, snapshots, params)):
        new = _flat(news[i] if news is not None else snap.sub(w))
        old = _flat(old)
        a_parts.append(torch.dot(old, new))
        if old_norm:
            b_parts.append(torch.dot(old, old))
        c_parts.append(torch.dot(new, new))
        if weights:
            snap = _flat(snap)
            w_parts.append(torch.dot(snap, snap))
    return [a_parts, b_parts, c_parts, w_parts], None if news is None else list(news)


def advance_window_(
    params: list[Tensor],
    snapshots: list[Tensor],
    prev_updates: list[Tensor],
    lr_mean: float | Tensor,
    *,
    foreach: bool = False,
    directions: list[Tensor] | None = None,
    keep_scale: bool = False,
    fused: bool = False,
) -> None:
    """Keep the window: ``u_old <- (snapshot - w) / lr_mean`` and ``snapshot <- w``, in place.

    Forms the displacement exactly as :func:`window_inner_products` did (same operations, same bits), or
    copies ``directions``, the displacements :func:`window_products_and_directions` returned. With
    ``keep_scale=True`` the buffers keep the displacement itself, ``u_old`` times ``lr_mean``, one pass
    over the weights less: the caller then passes ``old_scale=lr_mean`` with them to the next window's
    inner products.
    """
    if not params:
        return
    restarted = False  # the fused kernel moves the snapshot to the weights itself
    if fused and directions is None:
        for old, snap, w in zip(prev_updates, snapshots, params):
            # Written in place: only buffers whose flat view is themselves.
            if _fuses(old, snap, w) and old.is_contiguous() and snap.is_contiguous():
                _fused("advance")(old.view(-1), snap.view(-1), w.reshape(-1))
            else:
                torch.sub(snap, w, out=old)
                snap.copy_(w)
        restarted = True
    elif directions is not None:
        _copy_all_(prev_updates, directions, foreach=foreach)
    elif foreach:
        torch._foreach_copy_(prev_updates, snapshots)
        torch._foreach_sub_(prev_updates, params)
    else:
        for old, snap, w in zip(prev_updates, snapshots, params):
            torch.sub(snap, w, out=old)
    if not keep_scale:
        if foreach:
            torch._foreach_div_(prev_updates, lr_mean)
        else:
            for old in prev_updates:
                old.div_(lr_mean)
    if not restarted:
        restart_window_(params, snapshots, foreach=foreach)


def _copy_all_(dst: list[Tensor], src: list[Tensor], *, foreach: bool) -> None:
    if not dst:
        return
    if foreach:
        torch._foreach_copy_(dst, src)
    else:
        for d, x in zip(dst, src):
            d.copy_(x)


def rollback_window_(params: list[Tensor], snapshots: list[Tensor], *, foreach: bool = False) -> None:
    """Undo the window: copy the snapshot back into the weights (``u_old`` and the snapshot stay)."""
    _copy_all_(params, snapshots, foreach=foreach)


def undo_kept_window_(
    params: list[Tensor], snapshots: list[Tensor], prev_updates: list[Tensor], *, foreach: bool = False
) -> None:
    """After :func:`rollback_window_`, back one window more: to the start of the last kept window, whose
    ``start - end`` displacement the ``u_old`` buffers hold (kept with ``keep_scale``); the snapshot moves
    there too and ``u_old`` is cleared, so the next window is a first one."""
    if not params:
        return
    if foreach:
        torch._foreach_add_(params, prev_updates)
        torch._foreach_copy_(snapshots, params)
        torch._foreach_zero_(prev_updates)
    else:
        for param, snap, prev in zip(params, snapshots, prev_updates):
            param.add_(prev)
            snap.copy_(param)
            prev.zero_()


def reset_inner_momentum_(param_states: list[dict[str, Any]]) -> None:
    """After a rollback: zero the inner optimizer's first moments, and any non-finite state entries.

    Only known first-moment buffers are zeroed (:data:`MOMENTUM_KEYS`): other per-parameter state can be
    step sizes (Rprop) or running averages that zero would break. Second moments are kept: they measure
    the gradients' scale, which an ordinary rollback does not change (one of a window that blew up
    restarts them too: :func:`restart_inner_statistics_`). Non-finite entries anywhere (an overflowed
    second moment) become 0, the value those buffers start from. Complex buffers (of complex parameters)
    count as floating ones. No host sync: finite entries pass ``nan_to_num_`` unchanged, so it is applied
    without asking first.
    """
    for state in param_states:
        for key, value in state.items():
            if not isinstance(value, Tensor) or key.startswith("tlr_"):
                continue
            if not (value.is_floating_point() or value.is_complex()):
                continue
            if key in MOMENTUM_KEYS:
                value.zero_()
            else:
                torch.nan_to_num_(value, nan=0.0, posinf=0.0, neginf=0.0)


def rescale_cached_rates_(param_states: list[dict[str, Any]], factor: float | Tensor) -> None:
    """After TLR rescaled a group's rate by ``factor``: rescale the rate an inner optimizer computed from
    its last step's ``lr`` and applies in its next one (ASGD's ``eta``, ``lr / (1 + λ lr t) ** α``),
    which would otherwise take one more step at the old rate.

    One step at the old rate is one window at K = 1: a rollback's cut came a step late, after the rate it
    cut had wrecked the weights again (ASGD ended 100-1e6 times above its start in PyTorch's own
    20-step test at K = 1); and every window's direction was measured against a rate it did not use.
    """
    for state in param_states:
        if "ax" not in state:  # ASGD's state: eta, mu and the averaged iterate ax
            continue
        eta = state.get("eta")
        if isinstance(eta, Tensor):
            eta.mul_(factor.to(eta.device, eta.dtype) if isinstance(factor, Tensor) else factor)
        elif isinstance(eta, int | float) and not isinstance(factor, Tensor):
            state["eta"] = eta * factor


def restart_inner_statistics_(param_states: list[dict[str, Any]]) -> None:
    """After rolling back a window that blew up: restart the Adam family's second moments with their step
    count (and NAdam's momentum product), as a fresh optimizer has them.

    The blown-up window's gradients entered the second moments, and an average over ``1 / (1 - β2)``
    steps (1000 for Adam's default) would keep sizing the steps by them long after the weights are back:
    the steps come out hundreds of times too small, the rate climbs to make up for it, and once the
    memory fades that rate is far too high. Only states that count steps are restarted (their bias
    correction restarts with the count); other optimizers' statistics (Adagrad's sums, RMSprop's
    averages without a correction, Rprop's step sizes) are left to :func:`reset_inner_momentum_`.
    """
    for state in param_states:
        if "step" not in state or not any(isinstance(state.get(key), Tensor) for key in SECOND_MOMENT_KEYS):
            continue
        for key in SECOND_MOMENT_KEYS:
            value = state.get(key)
            if isinstance(value, Tensor):
                value.zero_()
        step = state["step"]
        if isinstance(step, Tensor):
            step.zero_()
        else:
            state["step"] = type(step)(0)
        product = state.get("mu_product")
        if isinstance(product, Tensor):
            product.fill_(1.0)
        elif product is not None:
            state["mu_product"] = 1.0


def restart_window_(params: list[Tensor], snapshots: list[Tensor], *, foreach: bool = False) -> None:
    """Start the next window: copy the current weights into the snapshot buffers."""
    _copy_all_(snapshots, params, foreach=foreach)


class Status(str, Enum):
    """Why a meta-step did what it did (a ``str``: compares equal to its value)."""

    UPDATED = "updated"  # the rule's factor was applied
    CAPPED = "capped"  # the factor hit max_factor
    FIRST_WINDOW = "first_window"  # no previous window yet: the rate is kept
    # b - a <= 0: the Newton step is undefined. The paper's rule keeps the rate; RobustRule reads the loss
    # instead (its item 4: x(1 + gamma), max_factor, or 1 - gamma where the loss rose), so the factor can
    # differ from 1 under this status.
    NONPOSITIVE_DENOMINATOR = "nonpositive_denominator"
    NONFINITE = "nonfinite"  # the model diverged: rate kept
    LOSS_GUARD = "loss_guard"  # the window's loss rose and the guard overruled the rule
    ROLLBACK = "rollback"  # the window was undone and the rate lowered
    SCHEDULE_HOLD = "schedule_hold"  # a schedule lowered the rate below its peak: the rule's step was held
    PLATEAU = "plateau"  # the loss made no progress for a while: the rate was cut (RobustRule's patience)

    def __str__(self) -> str:
        return self.value


# Statuses where the rate was changed by a decision, not left alone for want of one.
_ACTED = frozenset(
    {Status.UPDATED, Status.CAPPED, Status.LOSS_GUARD, Status.ROLLBACK, Status.SCHEDULE_HOLD, Status.PLATEAU}
)


@dataclass(frozen=True)
class MetaStepDecision:
    """What one meta-step does to a group's rate: the multiplicative ``factor``, why, whether the
    window's weights are rolled back to its start, whether the rollback also restarts the inner
    optimizer's gradient statistics (:func:`restart_inner_statistics_`: the window blew up), and whether it
    goes one window deeper (:func:`undo_kept_window_`)."""

    factor: float
    status: Status
    rollback: bool = False
    restart: bool = False
    # The rollback goes one window deeper, to the last kept window's start (undo_kept_window_): the
    # window's first loss, measured at its start, had already jumped.
    deeper: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def skipped(self) -> bool:
        """The rate was left as it was for want of a decision (no previous window, an undefined Newton
        step the rule did not read otherwise, a non-finite window): the status says so and the factor is 1."""
        return self.status not in _ACTED and self.factor == 1.0


def anneal_multiplier(step: int, total_steps: int | None, anneal_steps: int) -> float:
    """The budget-aware decay's multiplier at counted step ``step`` (0-based): 1 until the last
    ``anneal_steps`` of ``total_steps``, then a straight line to 0 (``1 / anneal_steps`` at the last
    step, 0 past the budget); 1 without a budget."""
    if total_steps is None or anneal_steps <= 0:
        return 1.0
    return min(1.0, max(0.0, (total_steps - step) / anneal_steps))


def newton_factor(
    a: float, b: float, *, gamma: float, max_factor: float, first_window: bool = False, c: float = 0.0
) -> MetaStepDecision:
    """The damped Newton step of Eq. 8 as a multiplicative factor on the learning rate.

    With the K-step approximation, dL/dα ∝ -a and d²L/dα² ∝ b - a, so the damped Newton step is
    ``α ← α (1 + γ a / (b - a))``. A non-positive second derivative (b - a ≤ 0) would point the Newton step
    uphill or to infinity; the paper then keeps the rate, and so do we. With b - a > 0 and γ ≤ 1 the factor
    lies in (1 - γ, ∞), so it is always positive; it is capped at ``max_factor``. ``c``, the window's own
    ``<u_new, u_new>``, only counts when it is not finite: the weights overflowed, and ``a`` formed in their
    dtype would not be finite either (it is summed in float64 from the raw displacement, where it can be).
    """
    if first_window:
        return MetaStepDecision(1.0, Status.FIRST_WINDOW)
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return MetaStepDecision(1.0, Status.NONFINITE)
    denominator = b - a
    if not denominator > 0.0:
        return MetaStepDecision(1.0, Status.NONPOSITIVE_DENOMINATOR)
    factor = 1.0 + gamma * a / denominator
    if not (math.isfinite(factor) and factor > 0.0):
        # Only reachable through overflow or γ at its bound with a/(b-a) rounding to -1.
        return MetaStepDecision(1.0, Status.NONFINITE)
    if factor > max_factor:
        return MetaStepDecision(max_factor, Status.CAPPED)
    return MetaStepDecision(factor, Status.UPDATED)


def newton_factor_on_device(
    products: Tensor, *, gamma: float, max_factor: float, first_window: bool = False
) -> Tensor:
    """:func:`newton_factor` computed where ``products`` (``[a, b, c]``) are, without a host sync: the
    factor as a 0-dim tensor, 1 wherever :func:`newton_factor` keeps the rate (first window, non-finite
    inner products, ``b - a <= 0``), capped at ``max_factor``. Same operations, same bits."""
    a, b = products[0], products[1]
    one = torch.ones_like(a)
    if first_window:
        return one
    denominator = b - a
    factor = 1.0 + gamma * a / denominator
    keep = (denominator > 0.0) & torch.isfinite(factor) & (factor > 0.0) & torch.isfinite(products[2])
    return torch.where(keep, factor.clamp(max=max_factor), one)


@dataclass(frozen=True)
class WindowLoss:
    """A window's mean training loss and the squared standard error of that mean (∞ from one loss).

    ``first`` is the window's first loss (NaN when unknown). ``mssd_variance`` is the squared standard
    error again, but from the mean square of successive differences (von Neumann): a loss that climbs or
    falls within the window inflates the sample variance, not this, so a divergence cannot pass for
    noise (∞ when unknown). ``trend`` is the least-squares slope of the loss over the window's steps
    (per step) and ``trend_variance`` its squared standard error from the same successive-difference
    noise (NaN and ∞ when unknown).
    """

    mean: float
    variance: float
    first: float = math.nan
    mssd_variance: float = math.inf
    trend: float = math.nan
    trend_variance: float = math.inf

    @classmethod
    def from_sums(
        cls,
        total: float,
        total_sq: float,
        count: int,
        first: float = math.nan,
        sq_diff: float = math.nan,
        index_weighted: float = math.nan,
    ) -> WindowLoss | None:
        """From the sum and the sum of squares of ``count`` per-step losses (and optionally the first one,
        the sum of squared successive differences and ``Σ i·loss_i`` over the 0-based step index ``i``);
        ``None`` when ``count`` is 0."""
        if count <= 0:
            return None
        mean = total / count
        if count == 1:
            return cls(mean, math.inf, first)
        # Sample variance over count - 1, clamped: rounding can make it slightly negative.
        sample_variance = max(total_sq - count * mean * mean, 0.0) / (count - 1)
        if not math.isfinite(sq_diff):
            return cls(mean, sample_variance / count, first)
        step_variance = sq_diff / (2 * (count - 1))
        # Σ (i - ī)² over i = 0 … count - 1.
        spread = count * (count * count - 1) / 12.0
        trend = (index_weighted - (count - 1) / 2.0 * total) / spread
        return cls(mean, sample_variance / count, first, step_variance / count, trend, step_variance / spread)


class LossSums(NamedTuple):
    """A window's loss sums, as they come back from the meta-step's one host sync (the ``LOSS_SUMS``
    entries of :func:`loss_window_sums`, in this order)."""

    total: float  # Σ loss
    total_sq: float  # Σ loss²
    first: float  # the window's first loss
    last: float  # its last loss
    sq_diff: float  # Σ (loss − previous loss)² over consecutive losses
    index_weighted: float  # Σ i·loss, i the loss's 0-based index in the window

    def window_loss(self, count: int) -> WindowLoss | None:
        """The window's :class:`WindowLoss` (``None`` when ``count`` is 0)."""
        return WindowLoss.from_sums(
            self.total, self.total_sq, count, self.first, self.sq_diff, self.index_weighted
        )


def stack_losses(losses: Sequence[Tensor | float], device: torch.device) -> Tensor:
    """Per-step losses (one-element tensors, anywhere, or numbers) as one 1-D tensor on ``device`` in the
    sum dtype (float64; float32 on MPS). No host sync: tensors are moved, not read."""
    dtype = _sum_dtype(device)
    tensors = [x for x in losses if isinstance(x, Tensor)]
    if not tensors:
        return torch.tensor([float(x) for x in losses], dtype=dtype, device=device)
    if len(tensors) == len(losses) and all(t.device == device for t in tensors):
        if all(t.dim() == 0 for t in tensors):
            return torch.stack(tensors).to(dtype)
        return torch.stack([t.reshape(()) for t in tensors]).to(dtype)
    return torch.stack(
        [
            x.reshape(()).to(device=device, dtype=dtype)
            if isinstance(x, Tensor)
            else torch.tensor(float(x), dtype=dtype, device=device)
            for x in losses
        ]
    )


def host_loss_sums(
    losses: Sequence[float], carried: Sequence[float] | None = None, carried_count: int = 0
) -> list[float]:
    """:func:`loss_window_sums` on the host, for losses that are numbers already (CPU losses: reading them
    syncs nothing): the sums accumulated loss by loss in float64, in the order a running sum would."""
    total, total_sq, first, last, sq_diff, index_weighted = (
        carried if carried_count > 0 and carried else (0.0,) * 6
    )
    count = carried_count
    for value in losses:
        total += value
        total_sq += value * value
        if count == 0:
            first += value
            last += value
        else:
            step = value - last
            last += step
            sq_diff += step * step
            index_weighted += count * value
        count += 1
    return [total, total_sq, first, last, sq_diff, index_weighted]


def loss_window_sums(losses: Tensor, carried: Tensor | None = None, carried_count: int = 0) -> Tensor:
    """The ``[Σ loss, Σ loss², first, last, Σ (loss − previous)², Σ i·loss]`` sums of a window (see
    :class:`LossSums`) whose losses are ``carried``'s ``carried_count`` (sums of the window's earlier
    losses, in this same form) followed by the 1-D ``losses``; on ``losses``' device, no host sync."""
    n = losses.numel()
    if carried is not None and carried_count > 0:
        carried = carried.to(device=losses.device, dtype=losses.dtype)
    else:
        carried, carried_count = None, 0
    if n == 0:
        return losses.new_zeros(6) if carried is None else carried.clone()
    # Carried in: its last loss leads the differences, its first is the window's, the indices go on.
    joined = losses if carried is None else torch.cat([carried[3:4], losses])
    steps = joined[1:] - joined[:-1]
    index = torch.arange(carried_count, carried_count + n, device=losses.device, dtype=losses.dtype)
    first = losses[0] if carried is None else carried[2]
    sums = torch.stack(
        [
            losses.sum(),
            (losses * losses).sum(),
            first,
            losses[-1],
            (steps * steps).sum(),
            (index * losses).sum(),
        ]
    )
    if carried is None:
        return sums
    return sums + torch.cat([carried[:2], carried.new_zeros(2), carried[4:]])


def negated(loss: WindowLoss | None) -> WindowLoss | None:
    """The same window read as a loss to minimise (for an inner optimizer that maximizes): the mean, the
    first value and the trend change sign, the spreads do not."""
    if loss is None:
        return None
    return replace(loss, mean=-loss.mean, first=-loss.first, trend=-loss.trend)


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
    if decision.status == Status.FIRST_WINDOW or loss_now is None or loss_prev is None:
        return decision
    if not math.isfinite(loss_prev.mean):
        return decision  # a diverged window sets no bar to compare against
    rise = loss_now.mean - loss_prev.mean
    if rise <= tolerance * abs(loss_prev.mean):  # NaN and +inf fail this: they count as rises
        return decision
    significant = not rise <= z * math.sqrt(loss_now.variance + loss_prev.variance)
    if significant or decision.status not in (Status.UPDATED, Status.CAPPED):
        factor = min(decision.factor, max(1.0 - gamma, 0.5))
    else:
        factor = min(decision.factor, 1.0)
    if factor == decision.factor:
        return decision
    return MetaStepDecision(factor, Status.LOSS_GUARD)
