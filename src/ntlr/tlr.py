"""``TLR``: the Newton-based trainable learning rate as a wrapper around any ``torch.optim`` optimizer."""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import itertools
import math
import numbers
import os
import sys
import threading
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, SupportsIndex, TypeGuard

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim import optimizer as _torch_optimizer

from . import distributed
from .functional import (
    LossSums,
    MetaStepDecision,
    Status,
    WindowLoss,
    advance_window_,
    anneal_multiplier,
    fusable_device,
    guarded_factor,
    host_loss_sums,
    loss_window_sums,
    negated,
    newton_factor,
    newton_factor_on_device,
    rescale_cached_rates_,
    reset_inner_momentum_,
    restart_inner_statistics_,
    restart_window_,
    rollback_window_,
    stack_losses,
    undo_kept_window_,
    window_partials_and_directions,
    window_products_and_directions,
    window_scales,
)
from .history import MetaStepRecord
from .rules import (
    RobustRule,
    Rule,
    WindowStats,
    first_moment,
    foreign_rule_state,
    fresh_rule_state,
    loss_unchanged,
    make_rule,
    momentum_warmup,
    rule_state_from_pairs,
    rule_state_pairs,
)

# TLR's per-group record and the keys it is written under in a state dict: ntlr.state.
from .state import (
    FACTOR,
    LOSS_COUNT,
    LOSS_SUM,
    META_STEPS,
    PREV_LOSS,
    PREV_SCALE,
    PREV_UPDATE,
    RULE_STATE,
    SCHEDULE_PEAK,
    SNAPSHOT,
    STEPS,
    WINDOW_LR_SUM,
    WINDOW_STEPS,
    GroupMeta,
)
from .state import LOSS_SUMS as _LOSS_SUMS
from .state import PREFIX as _TLR_PREFIX

__all__ = ["TLR"]

# The loss log is folded into the groups' carried sums once it holds this many losses beyond the longest
# window: a group whose window stays open (lr 0 throughout) must not make it grow without bound.
_LOSS_LOG_SLACK = 1024
# The largest group (in elements) whose meta-step takes the foreach path on the CPU when ``foreach`` is
# None: its transient copy of u_new is then at most 4 MiB in float32.
_FOREACH_CPU_NUMEL = 1 << 20

# The rule TLR uses when none is named: chosen on the gauntlet's quick tier, confirmed on the paper's MNIST
# grid (docs/rules.md). rule="paper" is Eq. 8 exactly.
DEFAULT_RULE = "robust"


# Frames a warning should not point at: this package's and torch's (the step wrappers torch.optim puts
# around step()). The first frame outside them is the user's line that called in.
_INTERNAL_DIRS = tuple(
    os.path.dirname(module.__file__ or "") + os.sep for module in (sys.modules[__package__], torch)
)


# The paper's fraction of an epoch per window (Sec. 4: K = round(p * steps_per_epoch)).
DEFAULT_P = 0.2


def _user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the caller point at the first frame outside ntlr
    and torch: the user's ``opt.step()``, ``TLR(...)`` or ``ntlr.wrap(...)``, however deep the call."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame, level = frame.f_back, level + 1
    return level


def _rate_limit(group: dict[str, Any]) -> float:
    """The largest rate every parameter of ``group`` can take as a step size (its dtype's largest value)."""
    limits = [torch.finfo(p.dtype).max for p in group["params"] if p.is_floating_point() or p.is_complex()]
    return min(limits, default=math.inf)


def _momentum_warmup(group: dict[str, Any], beta: float, steps: int) -> float:
    """How much longer a window is than one that started from empty first moments, from SGD-style momentum
    filling up (:func:`ntlr.rules.momentum_warmup`, ``beta`` its first moment): groups with a ``momentum``
    and no ``betas`` (the Adam family's bias correction leaves no ramp). The rule knows which windows
    started so: the first (TLR wraps a fresh optimizer) and each after a rollback (TLR clears the first
    moments)."""
    if "betas" in group:
        return 1.0
    dampening = group.get("dampening", 0.0)
    return momentum_warmup(
        beta,
        steps,
        dampening=float(dampening) if isinstance(dampening, (int, float)) else 0.0,
        nesterov=bool(group.get("nesterov", False)),
    )


def _rate_dtype(group: dict[str, Any]) -> torch.dtype:
    """The dtype of a tensor rate handed to ``group``'s inner step: float32, or float64 where a parameter
    is float64 (the arithmetic type torch's fused and capturable optimizers compute in)."""
    wide = any(p.dtype == torch.float64 for p in group["params"])
    return torch.float64 if wide else torch.float32


# numbers.Integral / numbers.Real (numpy scalars too) compare and convert as int / float do, which is all
# the checks below ask of them.
def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> TypeGuard[float]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_hyperparameters(
    optimizer: object,
    update_every: object,
    steps_per_epoch: object,
    p: object,
    gamma: object | None,
    max_factor: object | None,
) -> int:
    """Validate the constructor's arguments; return K, the window length in steps."""
    if not isinstance(optimizer, Optimizer):
        hint = ""
        if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
            hint = f": build it first, TLR(torch.optim.{optimizer.__name__}(model.parameters(), lr=...), ...)"
        elif isinstance(optimizer, Iterator | list | tuple | dict):
            hint = (
                ": TLR wraps an optimizer, not parameters: TLR(torch.optim.SGD(params, lr=...), ...), "
                "or ntlr.wrap('SGD', params, lr=..., update_every=...)"
            )
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer instance, got {type(optimizer).__name__}{hint}"
        )
    if isinstance(optimizer, TLR):
        raise TypeError("optimizer is already a TLR; wrapping it twice would train the rate twice")
    for i, group in enumerate(optimizer.param_groups):
        if "lr" not in group:
            raise ValueError(f"optimizer.param_groups[{i}] has no 'lr' key; TLR trains 'lr'")
    if gamma is not None and (not _is_real(gamma) or not 0.0 < gamma <= 1.0):  # NaN fails it too
        raise ValueError(f"gamma must be a real number in (0, 1], got {gamma!r}")
    if max_factor is not None and (not _is_real(max_factor) or not max_factor >= 1.0):
        raise ValueError(f"max_factor must be a real number >= 1, got {max_factor!r}")
    if (update_every is None) == (steps_per_epoch is None):
        raise ValueError(
            "pass exactly one of update_every (K in steps) or steps_per_epoch "
            f"(K = round(p * steps_per_epoch)); got update_every={update_every!r}, "
            f"steps_per_epoch={steps_per_epoch!r}"
        )
    if update_every is not None:
        if p is not None:
            raise ValueError(
                f"p={p!r} sets the window with steps_per_epoch (K = round(p * steps_per_epoch)); with "
                "update_every it would be unused: pass update_every, or steps_per_epoch with p"
            )
        if not _is_int(update_every):
            raise TypeError(f"update_every must be an int, got {type(update_every).__name__}")
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every}")
        return int(update_every)
    if not _is_int(steps_per_epoch):
        raise TypeError(f"steps_per_epoch must be an int, got {type(steps_per_epoch).__name__}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if p is None:
        p = DEFAULT_P
    if not _is_real(p) or not (p > 0.0 and math.isfinite(p)):
        raise ValueError(f"p must be a positive finite real number, got {p!r}")
    return max(1, round(p * steps_per_epoch))


def _check_anneal(total_steps: object, anneal_fraction: object) -> tuple[int | None, int]:
    """Validate the budget-aware decay's arguments; return (total_steps, the steps of the decay)."""
    if not _is_real(anneal_fraction) or not 0.0 <= anneal_fraction <= 1.0:
        raise ValueError(f"anneal_fraction must be a real number in [0, 1], got {anneal_fraction!r}")
    if total_steps is None:
        return None, 0
    if not _is_int(total_steps):
        raise TypeError(f"total_steps must be an int or None, got {type(total_steps).__name__}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return int(total_steps), round(anneal_fraction * total_steps)


def _check_host_sync(host_sync: object, rule: Rule, loss_guard: bool, total_steps: int | None) -> bool:
    if not isinstance(host_sync, bool):
        raise TypeError(f"host_sync must be a bool, got {type(host_sync).__name__}")
    if host_sync:
        return True
    # The paper's rule is a closed form of a, b and c that runs on the device; the robust rule's tests and
    # the loss guard read the window's losses on the host.
    if rule.name != "paper" or rule.uses_loss or loss_guard or total_steps is not None:
        raise ValueError(
            "host_sync=False decides on the device, which only the paper's rule does: use rule='paper', "
            f"loss_guard=False and no total_steps (got rule={rule.name!r}, loss_guard={loss_guard}, "
            f"total_steps={total_steps})"
        )
    return False


def _check_sketch(sketch: object) -> int | None:
    if sketch is None:
        return None
    if not _is_int(sketch):
        raise TypeError(f"sketch must be an int >= 2 or None, got {type(sketch).__name__}")
    if sketch < 2:
        raise ValueError(f"sketch must be >= 2 (every sketch-th coordinate is kept) or None, got {sketch}")
    return int(sketch)


def _check_loss_guard(loss_guard: object, tolerance: object, z: object) -> None:
    if not isinstance(loss_guard, bool):
        raise TypeError(f"loss_guard must be a bool, got {type(loss_guard).__name__}")
    for name, value in (("loss_guard_tolerance", tolerance), ("loss_guard_z", z)):
        if not _is_real(value):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        if not (value >= 0.0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")


# Attributes added after the first release, with the value a TLR pickled before them gets on unpickling.
_LATER_ATTRIBUTES: dict[str, Any] = {
    "total_steps": None,
    "anneal_steps": 0,
    "_step_losses": list,
    "_steps_without_loss": 0,
    "_observed_any": False,
    "_warned": set,
    "_log": lambda: _LossLog(),
    "_view_cache": lambda: _ViewCache(),
    "sketch": None,
    "host_sync": True,
    "_unread": list,
    "fused": False,
}


class TLR(Optimizer):
    r"""Newton-based trainable learning rate (Retsinas et al.) around any ``torch.optim`` optimizer.

    Each param group's learning rate is rescaled every ``K`` steps by a damped Newton step on the loss as
    a function of the rate, computed from the weights (and, by the default rule, the training losses the
    loop already computes): no extra forward or backward pass.

    .. math::

        \begin{aligned}
        &\textbf{every step } t: \quad w_t = \mathrm{inner\_step}(w_{t-1};\ \alpha_t = s_t f),
            \qquad s_t = \text{the group's (scheduled) lr}\\
        &\textbf{every } K \textbf{ steps (window } k\textbf{):}\\
        &\quad u_k = \frac{w_{\text{snapshot}} - w_t}{\bar\alpha_k},
            \qquad \bar\alpha_k = \tfrac{1}{K}\textstyle\sum_{t \in \text{window}} \alpha_t\\
        &\quad a = \langle u_{k-1}, u_k\rangle, \quad b = \langle u_{k-1}, u_{k-1}\rangle,
            \quad c = \langle u_k, u_k\rangle\\
        &\quad (\phi, \text{rollback}) = \mathrm{rule}(a, b, c, \text{window losses})\\
        &\quad \textbf{if rollback}: \quad w_t \leftarrow w_{\text{snapshot}},
            \text{ the inner optimizer's first moments} \leftarrow 0\\
        &\quad \textbf{else}: \quad u_{k-1} \leftarrow u_k, \qquad w_{\text{snapshot}} \leftarrow w_t\\
        &\quad f \leftarrow f \cdot \phi
        \end{aligned}

    The paper's rule (``rule="paper"``, Eq. 8 exactly, never rolls back) is

    .. math::

        \phi = \min\!\Big(1 + \gamma \frac{a}{b - a},\ \text{max\_factor}\Big) \text{ if } b - a > 0,
        \quad 1 \text{ otherwise}
        \qquad (-\partial_\alpha\mathcal{L} \propto a,\ \partial^2_\alpha\mathcal{L} \propto b - a).

    The default, ``rule="robust"`` (:class:`ntlr.RobustRule`, beyond the paper), takes the same Newton
    step with safeguards measured on ``ntlr-bench``'s gauntlet: a window whose loss jumped, climbed or went
    non-finite is rolled back and the rate cut, the step down is taken undamped, a rising loss vetoes an
    increase, windows last at least the inner optimizer's momentum horizon, and a direction
    that blew up (``c > 16 b``) rolls the window back and caps the rate below the stability limit its
    growth implies; without an observed loss the step discounts the alignment momentum alone gives
    consecutive windows. Any object following :class:`ntlr.Rule` can be passed instead.

    The sums run over the group's parameters, so each group trains its own rate (one group per layer
    gives per-layer rates: see :func:`ntlr.per_layer_param_groups`). The first window has no
    predecessor and only records its direction, so the first rescale happens at step ``2K``.

    Departures from the paper, and from the authors' published wrapper:

    * the trained quantity is a factor ``f`` that multiplies the group's ``lr``; ``param_groups[i]["lr"]``
      stays what the user or an LR scheduler set, so closed-form schedulers (``LambdaLR``,
      ``OneCycleLR``) and chainable ones (``StepLR``) both compose: effective lr = schedule(t) × f.
      :meth:`get_lr` returns the effective rates. A decaying schedule is followed, not fought: below its
      peak, a rule with ``holds_under_schedules`` (the default) that has found the rate's scale holds
      ``f`` (``Status.SCHEDULE_HOLD``; only rollbacks act, and climbs through windows whose loss fell
      beyond noise while the schedule has cut less than half), and while it searches it steps down
      and climbs freely, whatever the schedule has cut; ``rule="paper"`` is never held;
    * a window's direction is normalised by the mean effective lr over its steps (with a constant lr,
      exactly the paper's ``/α``); steps taken with lr 0 (warm-up from zero, DCP's initialising step)
      and steps the inner optimizer skips (``GradScaler`` on inf/NaN) do not count towards ``K``;
    * the update is skipped when the Newton denominator ``b - a`` is not positive (the authors' code
      tests ``‖u_old‖² < 0``, never true), the ×``max_factor`` cap is enforced (commented out there),
      the first window is used (theirs wastes two), and a meta-step costs one host sync for all groups
      together (theirs calls ``.item()`` per parameter);
    * non-finite inner products (a diverged model) skip the meta-step instead of poisoning the rate
      (the paper's rule), or roll the window back (the robust rule);
    * the default rule is not the paper's: ``rule="paper"`` restores it exactly.

    Args:
        optimizer: the inner optimizer; its ``param_groups``, ``state`` and ``defaults`` are this
            wrapper's, live.
        update_every: K, the window length in optimizer steps (works without epochs).
        steps_per_epoch: alternatively, the paper's form ``K = max(1, round(p * steps_per_epoch))``.
        p: the fraction of an epoch per window, used with ``steps_per_epoch`` (default 0.2, the paper's);
            an error with ``update_every``, where it would be unused.
        rule: what a meta-step does with the window statistics: a name from :data:`ntlr.RULES`
            (``"paper"``: Eq. 8 exactly; ``"robust"``: with rollback and safeguards, see
            :class:`ntlr.RobustRule`) or any object following :class:`ntlr.Rule`.
        gamma: the Newton damping γ ∈ (0, 1] of a named rule (default: the rule's own, 0.33).
        max_factor: the largest factor one meta-step of a named rule may apply (default: the paper's
            100). Set both on the object instead when ``rule`` is one.
        foreach: use multi-tensor ``torch._foreach`` kernels at meta-steps; ``None`` picks them when all
            parameters are on an accelerator.
        fused: beyond the paper, off by default: the meta-step's inner products in one pass over each
            tensor's weights and window buffers, and its advance in one more, compiled by
            ``torch.compile`` (Inductor's C++) at the first meta-step (seconds of compile time; where no
            build is possible it warns and runs the same sums eagerly): for CPU parameters, in
            float32/float64 (others take the loop path; on GPUs the foreach path stays, which is already
            near the memory floor there, while Inductor's reductions over dynamic lengths ran 9-25×
            slower on an H200). Measured on 12.6M CPU parameters: a meta-step of 1.46-1.73
            SGD-momentum steps against 2.25-2.44 (foreach) and 2.53-2.75 (loop). The sums agree with the
            loop path's to float32 rounding (another summation order), not bit for bit.
        process_group: for parameters that are plain-tensor shards (FSDP1 ``use_orig_params``, ZeRO
            flat shards): the ``torch.distributed`` group whose processes hold the other shards; the
            inner products are summed over it once per meta-step. Not needed for DDP (replicated
            parameters) nor for FSDP2/HSDP: DTensor parameters are reduced over the mesh dims of their
            ``Shard`` placements, whatever this argument says.
        loss_guard: beyond the paper, off by default: veto or reverse the rule when the training loss
            rose. The rule reads only the weights; with weight decay and momentum consecutive windows can
            stay aligned while the loss climbs, and it then raises the rate into a divergence (and with
            even K a period-two divergence gives ``b - a < 0``, so the rate is kept). With the guard, each
            window's mean loss is compared with the previous window's: after a rise the factor is at most
            1, and after a rise larger than ``loss_guard_z`` standard errors of the two means (or any rise
            where the Newton step was skipped) it is at most ``max(1 - γ, 1/2)``; such meta-steps are
            recorded with status ``loss_guard`` (:func:`ntlr.functional.guarded_factor` has the rule).
            The loss comes from ``step(closure)``'s return value, or from :meth:`observe_loss` when the
            loop calls ``step()``; the window's losses travel in the meta-step's one host sync and
            are summed there. A window with no observed loss is not guarded. In a group whose
            inner optimizer has ``maximize=True`` the observed value is the objective being climbed, and
            the rule and the guard read its negation.
        loss_guard_tolerance: a rise counts only above ``tolerance * |previous mean|`` (relative; >= 0).
        loss_guard_z: how many standard errors a rise must exceed to shrink the rate (>= 0; 0 shrinks
            after every rise). The default 1 was chosen on the digits benchmark (docs/safeguards.md).
        total_steps: the run's budget in counted steps, for a linear decay of the rate to 0 over its last
            ``anneal_fraction`` (the factor is held meanwhile; only rollbacks act). ``None``: no decay.
        anneal_fraction: the fraction of ``total_steps`` the decay spans (in [0, 1]).
        sketch: the low-memory mode (beyond the paper; off by default): the window buffers follow every
            ``sketch``-th coordinate of each parameter's flattening, so they cost ``8 / sketch`` bytes per
            float32 parameter instead of 8 (``sketch=8``: 1 B). The inner products are then those of the
            sketch: estimates of a, b and c up to a common scale, which the rules' ratios do not see. A
            rollback cannot restore the weights from a sketch: the rate is cut, the inner optimizer's
            momentum cleared and the window restarts where the weights are. Not for DTensor parameters.
        host_sync: ``False`` (beyond the paper; the paper's rule only, no loss guard, no
            ``total_steps``): the meta-step is decided on the device and the trained rate is a device
            tensor handed to the inner optimizer as its ``lr`` (float32; fused or capturable
            optimizers take one): no host sync in any step, and every tensor a window hands the next is
            written in place, so one window of K whole training steps can be captured as a CUDA graph
            and replayed (docs/gpu.md). ``opt.history`` then reads the device when it is read.

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = TLR(torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), update_every=50)
        >>> for _ in range(200):
        ...     opt.zero_grad()
        ...     loss = model(torch.randn(8, 4)).pow(2).mean()
        ...     loss.backward()
        ...     opt.observe_loss(loss)  # the default rule reads the loss (no host sync); or step(closure)
        ...     opt.step()
        >>> len(opt.get_lr())
        1
    """

    # The wrapper only forwards step(): GradScaler must unscale and skip on inf itself.
    _step_supports_amp_scaling = False

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        update_every: int | None = None,
        steps_per_epoch: int | None = None,
        p: float | None = None,
        rule: str | Rule = DEFAULT_RULE,
        gamma: float | None = None,
        max_factor: float | None = None,
        foreach: bool | None = None,
        process_group: torch.distributed.ProcessGroup | None = None,
        loss_guard: bool = False,
        loss_guard_tolerance: float = 0.0,
        loss_guard_z: float = 1.0,
        total_steps: int | None = None,
        anneal_fraction: float = 0.2,
        sketch: int | None = None,
        host_sync: bool = True,
        fused: bool = False,
    ) -> None:
        if not isinstance(fused, bool):
            raise TypeError(f"fused must be a bool, got {type(fused).__name__}")
        self.fused = fused
        self.total_steps, self.anneal_steps = _check_anneal(total_steps, anneal_fraction)
        self.sketch = _check_sketch(sketch)
        self.update_every = _check_hyperparameters(
            optimizer, update_every, steps_per_epoch, p, gamma, max_factor
        )
        _check_loss_guard(loss_guard, loss_guard_tolerance, loss_guard_z)
        options = {k: float(v) for k, v in (("gamma", gamma), ("max_factor", max_factor)) if v is not None}
        self.rule: Rule = make_rule(rule, **options)
        self.loss_guard = loss_guard
        self.loss_guard_tolerance = float(loss_guard_tolerance)
        self.loss_guard_z = float(loss_guard_z)
        self.host_sync = _check_host_sync(host_sync, self.rule, loss_guard, self.total_steps)
        distributed.check_process_group(process_group)
        self.process_group = process_group
        self.optimizer = optimizer
        self.p = (DEFAULT_P if p is None else p) if steps_per_epoch is not None else None
        self.foreach = foreach
        self._warned: set[str] = set()
        # Losses observed since the last step(), and steps taken since the last loss: what tells a loss
        # observed twice, or after its step, from one observed once before it. Kept (detached) until the
        # step, so that a new loss cannot reuse a freed one's memory and look like it.
        self._step_losses: list[Tensor | float] = []
        self._steps_without_loss = 0
        self._observed_any = False
        # The losses of the steps since the oldest open window began (detached; summed when a window
        # closes). Mutable state is kept in objects updated in place, never rebound: frameworks that copy an
        # optimizer's __dict__ (Lightning's LightningOptimizer) then share it.
        self._log = _LossLog()
        self._view_cache = _ViewCache()
        # TLR's own state per param group, by position (param groups hold hyper-parameters only).
        self.group_meta: list[GroupMeta] = []
        self._history: list[MetaStepRecord] = []
        # Meta-steps decided on the device (host_sync=False), read into the history when it is read.
        self._unread: list[tuple[int, int, int, bool, Tensor]] = []
        # What torch.optim.Optimizer.__init__ sets up, minus its param groups: those are the inner
        # optimizer's (see the properties below), which Optimizer.__init__ would overwrite.
        torch._C._log_api_usage_once("python.optimizer")
        self._optimizer_step_pre_hooks = optimizer._optimizer_step_pre_hooks.__class__()
        self._optimizer_step_post_hooks = optimizer._optimizer_step_post_hooks.__class__()
        self._optimizer_state_dict_pre_hooks = optimizer._optimizer_state_dict_pre_hooks.__class__()
        self._optimizer_state_dict_post_hooks = optimizer._optimizer_state_dict_post_hooks.__class__()
        self._optimizer_load_state_dict_pre_hooks = optimizer._optimizer_load_state_dict_pre_hooks.__class__()
        self._optimizer_load_state_dict_post_hooks = (
            optimizer._optimizer_load_state_dict_post_hooks.__class__()
        )
        self._patch_step_function()
        self._warned_capturable_if_run_uncaptured = True
        # Parameters whose buffers are not yet in ``state`` (the inner optimizer has not initialised
        # them), with the snapshot taken before their first step.
        self._pending: list[Tensor] | None = None
        self._pending_snapshots: dict[Tensor, Tensor] = {}
        self._seen_params: list[list[Tensor]] = []
        self._sync_meta()
        self._warn_if_window_differs()
        self._warn_if_budget_too_short()
        rates = [group.get("lr") for group in optimizer.param_groups]
        if rates and all(isinstance(lr, (int, float)) and lr == 0 for lr in rates):
            # A factor times 0 stays 0: nothing would train, silently (a single frozen group is fine).
            warnings.warn(
                "TLR: every param group has lr=0, and TLR trains a factor on the lr: nothing will train. "
                "Start from a small positive lr: the default rule finds the scale from anywhere in 1e-6 … 1",
                RuntimeWarning,
                stacklevel=_user_stacklevel(),
            )
        if type(optimizer).__module__.split(".")[0] == "schedulefree":
            # Measured (docs/rules.md): a rollback restores the evaluated weights but not Schedule-Free's
            # own sequences, and the trained rate fights its averaging: digits MLP, 30 epochs, from
            # lr 0.1 the eval-mode loss ended at 8.6e5 where Schedule-Free alone ends at 0.013.
            warnings.warn(
                f"TLR around {type(optimizer).__name__}: Schedule-Free keeps its own averaged sequences, "
                "which TLR's rollbacks and rate changes do not follow; measured, the pair diverges where "
                "Schedule-Free alone does not. Use Schedule-Free on its own, or TLR around its base "
                "optimizer",
                RuntimeWarning,
                stacklevel=_user_stacklevel(),
            )
        if isinstance(optimizer, torch.optim.Rprop):
            # torch's Rprop reads lr once, to fill each entry's step size at its first step; its sign rule
            # sizes every later step. Measured: the factor fell to 1e-12 ... 1e-38 on a least squares whose
            # loss Rprop took to its optimum all the same.
            warnings.warn(
                "TLR around Rprop: Rprop reads lr only at its first step, to start each entry's step size, "
                "and then sizes its steps by its own sign rule: the trained rate changes nothing after that "
                "step, and the rate TLR reports is not the one Rprop uses. Use Rprop on its own",
                RuntimeWarning,
                stacklevel=_user_stacklevel(),
            )

    @property
    def history(self) -> list[MetaStepRecord]:
        """One record per meta-step and group, oldest first. With ``host_sync=False`` the meta-steps are
        decided on the device and read into this list when it is read (one host sync then)."""
        if self._unread:
            self._read_device_records()
        return self._history

    @history.setter
    def history(self, value: list[MetaStepRecord]) -> None:
        self._history = value

    @property
    def gamma(self) -> float | None:
        """The rule's Newton damping γ (``None`` for a rule without one)."""
        return getattr(self.rule, "gamma", None)

    @property
    def max_factor(self) -> float | None:
        """The rule's largest factor per meta-step (``None`` for a rule without one)."""
        return getattr(self.rule, "max_factor", None)

    @property
    def observes_loss(self) -> bool:
        """Whether the training loss is used (by the rule or the loss guard): feed it through
        ``step(closure)`` or :meth:`observe_loss`."""
        return self.loss_guard or self.rule.uses_loss

    def _weighs_weights(self, meta: GroupMeta) -> bool:
        """Whether this window's sums carry ``<s, s>``: a rule that weighs a window's displacement against
        the weights (RobustRule's reach test) asks for it, always or, through a callable, only while the
        group has kept no window (``b = 0``): one more read of the weights at such a meta-step."""
        wanted = getattr(self.rule, "uses_weight_norm", False)
        if callable(wanted):
            # b = <u_old, u_old> > 0 once a window was kept (old_norm: the last window's b or c).
            kept = meta.old_norm is not None and meta.old_norm > 0.0
            if _takes_state(wanted):
                return bool(wanted(kept, meta.rule_state))
            return bool(wanted(kept))
        return bool(wanted)

    # -- the inner optimizer's live objects ------------------------------------------------------------
    @property
    def param_groups(self) -> list[Any]:
        """The inner optimizer's param groups, each seen through a view that adds TLR's entries of the
        group (``tlr_factor``, ... : what a state dict holds) read-only. The inner optimizer's own groups
        hold hyper-parameters only; TLR's state is :attr:`group_meta`. Writes other than to ``tlr_*``
        keys reach the inner group (LR schedulers set ``lr`` so)."""
        if isinstance(self.optimizer, TLR):
            # A framework's wrapper that subclasses this TLR and names it as its ``optimizer`` (Lightning's
            # LightningOptimizer): the TLR's own views.
            return self.optimizer.param_groups
        groups = self.optimizer.param_groups
        views = self._view_cache.views
        if views is None or len(views) != len(groups) or any(v.group is not g for v, g in zip(views, groups)):
            self._sync_meta()
            views = _GroupList(self, [_GroupView(self, index, group) for index, group in enumerate(groups)])
            self._view_cache.views = views
        return views

    @param_groups.setter
    def param_groups(self, value: list[Any]) -> None:
        self.optimizer.param_groups = [v.group if isinstance(v, _GroupView) else v for v in value]

    @property
    def state(self) -> Any:
        return self.optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.optimizer.state = value

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.optimizer.defaults = value

    def __getattr__(self, name: str) -> Any:
        # train()/eval() of schedule-free optimizers and any other inner extras. Guarded so copy/pickle,
        # which probe attributes before __dict__ is filled, do not recurse.
        if name.startswith("__") or name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A TLR pickled by an older version lacks what later versions added: their defaults.
        if "history" in state:
            state["_history"] = state.pop("history")
        for name, default in _LATER_ATTRIBUTES.items():
            state.setdefault(name, default() if callable(default) else default)
        self.__dict__.update(state)
        if "group_meta" not in state:
            # Pickled when TLR kept its state in the param groups: move it into the records.
            self.group_meta = [
                self._meta_from_entries(_pop_tlr_entries(group)) for group in self.optimizer.param_groups
            ]
        self._sync_meta()
        # As Optimizer.__setstate__ does: in a fresh process (unpickling, multiprocessing) the class's
        # step has not been wrapped yet, and step hooks would silently not fire.
        self._patch_step_function()

    def __repr__(self) -> str:
        guard = (
            f"loss_guard=True, loss_guard_tolerance={self.loss_guard_tolerance}, "
            f"loss_guard_z={self.loss_guard_z}, "
            if self.loss_guard
            else ""
        )
        windows = self.window_lengths()
        window = windows[0] if len(set(windows)) == 1 else windows
        # The inner optimizer as torch prints it, minus TLR's own tlr_* entries (internal bookkeeping), plus
        # the rate each group trains at: its lr is the scheduled one, not the one in use.
        lines = [f"{type(self.optimizer).__name__} ("]
        for i, (group, meta) in enumerate(zip(self.optimizer.param_groups, self._sync_meta())):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params" and not k.startswith(_TLR_PREFIX)):
                lines.append(f"    {key}: {group[key]}")
            factor, ramp = float(meta.factor), self._ramp(meta)
            rate = self._effective_lr(group, meta)
            decay = f" × decay {ramp:.6g}" if self.total_steps is not None else ""
            lines.append(f"    trained lr: {rate:.6g} (lr × trained factor {factor:.6g}{decay})")
        inner = "\n".join(lines) + "\n)"
        return (
            f"TLR(update_every={self.update_every}, window={window}, rule={self.rule!r}, {guard}"
            f"optimizer={inner})"
        )

    # -- public API ------------------------------------------------------------------------------------
    def get_lr(self) -> list[float]:
        """The effective learning rate of each param group: its ``lr`` times the trained factor (and the
        decay's ramp, with ``total_steps``)."""
        groups = self.optimizer.param_groups
        return [self._effective_lr(group, meta) for group, meta in zip(groups, self._sync_meta())]

    @property
    def searching(self) -> list[bool]:
        """Per param group, whether the rule is still finding the rate's scale (:class:`RobustRule`: not yet
        settled; ``False`` for a rule that does not say, as the paper's). While it searches, a window can
        climb up to ``max_factor`` and be rolled back a window later: the rollback restores the weights, not
        what saw them meanwhile, so start an EMA of the weights, or keep checkpoints, once no group searches
        (``not any(opt.searching)``)."""
        return [self._searching(meta) for meta in self._sync_meta()]

    def set_total_steps(self, total_steps: int | None, anneal_fraction: float = 0.2) -> None:
        """Set the run's budget after construction, as the constructor's ``total_steps`` and
        ``anneal_fraction`` would have (``None`` clears it): for a trainer that learns the budget only once
        it starts (:class:`ntlr.integrations.lightning.TLRBudget`). Counted in this TLR's steps from its
        first, so a resumed run passes the whole run's budget, not what is left of it. Raises where the
        constructor would (bad values, or ``host_sync=False``, which decides without a budget)."""
        checked, anneal_steps = _check_anneal(total_steps, anneal_fraction)
        _check_host_sync(self.host_sync, self.rule, self.loss_guard, checked)
        self.total_steps, self.anneal_steps = checked, anneal_steps
        self._warn_if_budget_too_short()

    def _warn_if_budget_too_short(self) -> None:
        # The first window only records a direction; the rate first changes at the end of the second.
        windows = self.window_lengths()
        if self.total_steps is None or not windows or self.total_steps >= 2 * min(windows):
            return
        self._warn_once(
            "budget",
            f"TLR: total_steps={self.total_steps} is shorter than two windows ({2 * min(windows)} steps): "
            "the rate is never trained (the first window only records a direction); use a shorter "
            "update_every",
        )

    def window_lengths(self) -> list[int]:
        """The window length K in counted steps that each param group's meta-steps use: ``update_every``,
        or longer where the rule lengthens it (:class:`ntlr.RobustRule`: the inner optimizer's momentum
        horizon)."""
        return [self._window_length(group) for group in self.optimizer.param_groups]

    def observe_loss(self, loss: Tensor | float) -> None:
        """Feed the rule (the default ``"robust"`` one reads it) or the loss guard one step's training loss.

        Call it once per step, before :meth:`step` (the loss belongs to the window of the step it was
        computed before). Not needed with ``step(closure)``, which observes the closure's return value
        itself. Several different losses before one step count as that step's micro-batch losses
        (gradient accumulation). Misuse warns once (``RuntimeWarning``), since each skews the window's
        loss statistics: the same loss (tensor, a view of it, or number) observed twice before one step
        (it counts twice), a call after ``step()`` (the first loss arrives right after a step that had
        none: it counts towards the next step), a closure's loss on a step whose loss was observed here
        (the closure's is not counted again), and, with a rule that reads the loss, a window that closes
        without one. ``loss`` is a one-element
        tensor (a detached reference is kept until its window closes: no kernel, no host sync here) or a
        real number. Under data parallelism pass the same loss on every process (e.g.
        the all-reduced mean): each process decides alone, and differing losses would give differing
        rates.

        Where neither the rule nor the loss guard reads the loss (``rule="paper"``), the loss is checked and
        ignored, with a warning once: swapping the rule in the same training loop needs no other change.

        Raises:
            TypeError: ``loss`` is neither a tensor nor a real number.
            ValueError: ``loss`` is a tensor with more than one element.
        """
        _check_loss(loss, "loss")
        if not self.observes_loss:
            self._warn_once(
                "loss_ignored",
                f"observe_loss: the rule {self.rule.name!r} does not read the loss and the loss guard is off "
                "(TLR(..., loss_guard=True)): the loss is ignored",
            )
            return
        if self._step_losses and any(_same_loss(loss, seen) for seen in self._step_losses):
            self._warn_once(
                "observed_twice",
                "TLR.observe_loss got the same loss twice before one step(): it counts twice towards the "
                "window. Observe each loss once (several different losses before one step() count as its "
                "micro-batch losses, as with gradient accumulation)",
            )
        elif self._steps_without_loss == 1 and not self._observed_any:
            # The first loss right after the first step: the loop observes after step(). (After several
            # steps without one, the loop merely started late; a window without losses warns then.)
            self._warn_once(
                "observed_after_step",
                "TLR.observe_loss was called after step(): call it before step(), since the loss belongs "
                "to the window of the step it was computed before (it now counts towards the next step)",
            )
        self._step_losses.append(_detached(loss))
        self._observed_any = True

    @staticmethod
    def profile_hook_step(func: Callable[..., Any]) -> Callable[..., Any]:
        """torch's wrapper of ``step`` (the global and the instance's step hooks, ``_optimizer_step_code``,
        a profiler range), with the range opened only while a profiler records: an unrecorded range is a
        dispatcher call of about 8 µs a step, a third of TLR's per-step cost on a small MLP. While one
        records, torch's own wrapper runs, so the step shows under its usual name."""
        recorded = Optimizer.profile_hook_step(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if torch._C._autograd._profiler_enabled():
                return recorded(*args, **kwargs)
            self = args[0]
            for pre_hook in itertools.chain(
                _torch_optimizer._global_optimizer_pre_hooks.values(), self._optimizer_step_pre_hooks.values()
            ):
                result = pre_hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(
                            f"{func} must return None or a tuple of (new_args, new_kwargs), but got {result}."
                        )
                    args, kwargs = result
            out = func(*args, **kwargs)
            self._optimizer_step_code()
            for post_hook in itertools.chain(
                self._optimizer_step_post_hooks.values(),
                _torch_optimizer._global_optimizer_post_hooks.values(),
            ):
                post_hook(self, args, kwargs)
            return out

        return wrapper

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)
        self._sync_meta()
        self._pending = None
        self._warn_if_window_differs()

    def _warn_if_window_differs(self) -> None:
        windows = self.window_lengths()
        if all(window == self.update_every for window in windows):
            return
        if self.p is not None:
            # K from steps_per_epoch is a fraction of an epoch, not a length the user chose: the README's
            # loop around any momentum optimizer warned on every run (history and repr show the window).
            return
        window = windows[0] if len(set(windows)) == 1 else windows
        keep = (
            "RobustRule(momentum_windows=0) keeps the one asked for"
            if isinstance(self.rule, RobustRule)
            else "the rule's window_length sets it"
        )
        self._warn_once(
            "window",
            f"TLR: the rule {self.rule.name!r} uses windows of {window} steps, not the {self.update_every} "
            "asked for: a window shorter than the inner optimizer's momentum memory mostly repeats the "
            f"previous one (repr and history show the window in use; {keep})",
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        inner = self.optimizer
        if set_to_none and _plain_zero_grad(inner):
            # torch's zero_grad around these loops adds a Dynamo guard and a profiler range that nothing
            # records: about 8 µs a call alone and 23 µs a step in a small MLP's training loop
            # (benchmarks/step_overhead.py), more than TLR's own per-step cost there. The same loop, where
            # that is all torch's would do.
            for group in inner.param_groups:
                for param in group["params"]:
                    param.grad = None
            return
        inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        # The inner optimizer's state dict hooks (registered on it before it was wrapped, by a framework
        # say) fire as its load hooks do through load_state_dict, nested inside TLR's own: TLR's pre hooks,
        # the inner's pre hooks, the packing, the inner's post hooks, TLR's post hooks.
        inner = self.optimizer
        if isinstance(inner, Optimizer) and (
            inner._optimizer_state_dict_pre_hooks or inner._optimizer_state_dict_post_hooks
        ):
            # The tables are swapped for the call: two threads packing at once would restore each other's.
            with _STATE_DICT_HOOKS_LOCK:
                return self._state_dict(nested=inner)
        return self._state_dict(nested=None)

    def _state_dict(self, *, nested: Optimizer | None) -> dict[str, Any]:
        """The packing, with the state dict hooks of ``nested`` (the inner optimizer, where it has any)
        nested inside TLR's own."""
        own_pre, own_post = self._optimizer_state_dict_pre_hooks, self._optimizer_state_dict_post_hooks
        if nested is not None:
            # Temporary hook tables in the nesting order (their keys are only positions).
            pre: Any = OrderedDict(
                enumerate(
                    [
                        *own_pre.values(),
                        *(_on(nested, h) for h in nested._optimizer_state_dict_pre_hooks.values()),
                    ]
                )
            )
            post: Any = OrderedDict(
                enumerate(
                    [
                        *(_on(nested, h) for h in nested._optimizer_state_dict_post_hooks.values()),
                        *own_post.values(),
                    ]
                )
            )
            self._optimizer_state_dict_pre_hooks, self._optimizer_state_dict_post_hooks = pre, post
        try:
            state_dict = super().state_dict()
        finally:
            self._optimizer_state_dict_pre_hooks, self._optimizer_state_dict_post_hooks = own_pre, own_post
        # Fresh per-param dicts, and copies of our buffers: the window buffers are rewritten in place at
        # every meta-step, so a state dict kept around must not change under the caller. Entries that are
        # not dicts (a state_dict hook may put e.g. an int into ``state``) pass through as Optimizer's do.
        state_dict["state"] = {
            index: {
                key: value.clone() if key in (SNAPSHOT, PREV_UPDATE) and isinstance(value, Tensor) else value
                for key, value in param_state.items()
            }
            if isinstance(param_state, dict)
            else param_state
            for index, param_state in state_dict["state"].items()
        }
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Optimizer.load_state_dict ends in __setstate__, which writes __dict__ and would not reach the
        # inner optimizer through our properties: load into the inner one, running our own hooks, on a
        # shallow copy as torch does (a hook that rebinds an entry changes what is loaded, not the
        # caller's dict).
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        self.optimizer.load_state_dict(state_dict)
        # torch's load put the saved tlr_* entries into the param groups: they are TLR's, not the groups'.
        self._log.entries.clear()  # the loaded windows' losses are in their carried sums
        self._log.start = 0
        self.group_meta[:] = [
            self._meta_from_entries(_pop_tlr_entries(group)) for group in self.optimizer.param_groups
        ]
        self._pending = None
        self._pending_snapshots.clear()
        self._check_buffer_shapes()
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def _check_buffer_shapes(self) -> None:
        """A loaded checkpoint's window buffers must be the ones this TLR keeps (whole, or the sketch)."""
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                snapshot = self.state.get(param, {}).get(SNAPSHOT)
                if not isinstance(snapshot, Tensor):
                    continue
                local = distributed.local_tensor(param)
                want = tuple(local.shape) if self.sketch is None else (-(-local.numel() // self.sketch),)
                if tuple(distributed.local_tensor(snapshot).shape) != want:
                    raise ValueError(
                        f"the state dict's window buffers (tlr_snapshot of shape "
                        f"{tuple(distributed.local_tensor(snapshot).shape)}) are not those of this TLR "
                        f"(sketch={self.sketch}: shape {want}): load it into a TLR with the sketch it was "
                        "saved with"
                    )

    # -- the step --------------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one inner step at the effective rates; every K counted steps, rescale the rates."""
        groups = self.optimizer.param_groups
        metas = self._sync_meta()
        self._refresh_pending(groups)
        if self._pending:
            self._snapshot_pending()
        scheduled = self._set_effective_rates(groups, metas)
        try:
            # This step fires torch's global step hooks (TLR.step is wrapped like any optimizer's); the inner
            # step must not fire them a second time, for the inner optimizer and before the meta-step.
            loss = _inner_step(self.optimizer, closure)
        finally:
            self._restore_scheduled_rates(groups, metas, scheduled)
        self._log_step_losses(loss)
        if self._pending:
            self._adopt_pending()
        due = []
        for index, (group, meta, (_, _, _, effective)) in enumerate(zip(groups, metas, scheduled)):
            if isinstance(effective, Tensor) or effective != 0.0:
                meta.steps += 1
                meta.window_steps += 1
                meta.window_lr_sum += effective
                if meta.window_steps >= self.update_every and meta.window_steps >= self._window_length(group):
                    due.append(index)
        if due:
            self._meta_step(due)
        else:
            self._fold_if_long()
        return loss

    def _no_gradients(self) -> bool:
        """No parameter of any group holds a gradient (asked only when a meta-step's windows did not move)."""
        return all(p.grad is None for group in self.optimizer.param_groups for p in group["params"])

    def _fold_if_long(self) -> None:
        if len(self._log.entries) > _LOSS_LOG_SLACK and len(self._log.entries) > 4 * self.update_every:
            self._fold_loss_log()

    def _set_effective_rates(
        self, groups: list[dict[str, Any]], metas: list[GroupMeta]
    ) -> list[tuple[Any, Any, float, Any]]:
        """Put each group's effective rate into its ``lr`` for the inner step; return (scheduled lr, rate
        handed over, ramp, effective rate at full precision) per group. The swap is what lets ``lr`` stay
        the user's or the scheduler's."""
        scheduled = []
        for group, meta in zip(groups, metas):
            lr = group["lr"]
            ramp = 1.0 if self.total_steps is None else self._ramp(meta)
            effective = lr * (meta.factor * ramp)
            handed = effective
            if isinstance(meta.factor, Tensor):
                # host_sync=False: the rate handed over in the precision the inner step computes in
                # (fused and capturable kernels read a tensor lr as float32, or float64 for float64
                # parameters); the factor and the window's rate sum stay float64.
                handed = effective.to(_rate_dtype(group))
            if not isinstance(lr, Tensor) and lr * ramp > meta.schedule_peak:
                meta.schedule_peak = float(lr * ramp)
            if ramp == 0.0:
                self._warn_once(
                    "past_total_steps",
                    f"TLR: past total_steps={self.total_steps}: the annealed rate is 0 and the weights no "
                    "longer move; raise total_steps to train on",
                )
            group["lr"] = handed
            scheduled.append((lr, handed, ramp, effective))
        return scheduled

    @staticmethod
    def _restore_scheduled_rates(
        groups: list[dict[str, Any]], metas: list[GroupMeta], scheduled: list[tuple[Any, Any, float, Any]]
    ) -> None:
        for group, meta, (lr, effective, ramp, _) in zip(groups, metas, scheduled):
            if group["lr"] is effective:
                group["lr"] = lr
            else:
                # The inner optimizer adapts its own rate (hypergradient-style): keep its change.
                group["lr"] = group["lr"] / (meta.factor * ramp) if ramp != 0.0 else lr

    def _log_step_losses(self, loss: Any) -> None:
        """Put the step's observed losses (or the closure's) into the loss log."""
        observed = bool(self._step_losses)
        observes = self.observes_loss
        if observes and loss is not None:
            if observed:
                self._warn_once(
                    "closure_and_observe",
                    "TLR.step(closure) on a step whose loss observe_loss already took: the closure's loss "
                    "was not counted again (use one or the other)",
                )
            else:
                _check_loss(loss, "the closure's return value")
                self._step_losses.append(_detached(loss))
                observed = True
        if observes:
            self._steps_without_loss = 0 if observed else self._steps_without_loss + 1
        if self._step_losses:
            self._log.entries.extend(self._step_losses)
            self._step_losses.clear()

    def _window_length(self, group: dict[str, Any]) -> int:
        # A rule may lengthen a group's windows (RobustRule: past the inner optimizer's momentum memory).
        length = getattr(self.rule, "window_length", None)
        return self.update_every if length is None else length(self.update_every, group)

    def _window_view(self, tensor: Tensor) -> Tensor:
        """The coordinates of ``tensor`` the window buffers follow: all of them, or with ``sketch`` every
        sketch-th entry of its flattening (a view of a contiguous tensor: no copy)."""
        return tensor if self.sketch is None else tensor.reshape(-1)[:: self.sketch]

    def _window_views(self, tensors: list[Tensor]) -> list[Tensor]:
        return tensors if self.sketch is None else [self._window_view(tensor) for tensor in tensors]

    def _use_foreach(self, params: list[Tensor]) -> bool:
        if self.foreach is not None:
            return self.foreach
        if not params:
            return False
        if all(p.device.type not in ("cpu", "meta") for p in params):
            return True
        # On the CPU the foreach path saves per-tensor dispatch (what a small model's meta-step costs) but
        # holds u_new for the whole group at once: taken while that copy is small.
        return sum(p.numel() for p in params) <= _FOREACH_CPU_NUMEL

    # -- the meta-step: gather -> reduce and sync once -> decide -> apply or roll back -> record ------------
    @torch.no_grad()
    def _meta_step(self, due: list[int]) -> None:
        if not self.host_sync:
            self._meta_step_on_device(due)
            return
        windows = []
        for index in due:
            window = self._gather(index)
            if isinstance(window.lr_mean, Tensor) or window.lr_mean != 0.0:
                windows.append(window)
                continue
            # Every step of the window ran at a tensor rate of exactly 0 (a scheduler's end, as
            # PolynomialLR's; the budget's decay past total_steps): its direction per unit rate is
            # undefined. As steps at a float rate of 0 are not counted, the window goes on from here.
            window.meta.window_steps = 0
            window.meta.window_lr_sum = 0.0
        if not windows:
            # No window closed: its losses stay in the log, kept short as between meta-steps.
            self._fold_if_long()
            return
        sums = self._reduce_and_sync(windows)
        self._leave_out_nonfinite_starts(windows, sums)
        still = True
        for window, window_sums in zip(windows, sums):
            stats = self._window_stats(window, window_sums)
            still = still and stats.c == 0.0
            decision = self._decide(window, stats)
            self._apply(window, decision, stats)
            self._record(window, decision, stats)
        if still and self._no_gradients():
            self._warn_once(
                "no_gradients",
                "TLR: a window closed with no parameter moving and none holding a gradient at step(): is "
                "opt.step() called before loss.backward()? The rate cannot train on steps that move nothing",
            )
        self._trim_loss_log()

    def _meta_step_on_device(self, due: list[int]) -> None:
        """The paper's rule with no host sync (``host_sync=False``): the factor is a device tensor, applied
        to a device tensor rate that the inner optimizer takes as its ``lr``."""
        windows = [self._gather(index) for index in due]
        # b is summed on this path: the record's old_norm (a host float) stays None here.
        for window, products in zip(windows, _reduced_products(windows)):
            meta = window.meta
            factor = newton_factor_on_device(
                products,
                gamma=self.gamma if self.gamma is not None else 0.33,
                max_factor=self.max_factor if self.max_factor is not None else math.inf,
                first_window=meta.meta_steps == 0,
            )
            _advance(window)
            first_window = meta.meta_steps == 0
            if isinstance(meta.factor, Tensor):
                # In place: a CUDA graph captured over a window reads and writes the same memory on
                # every replay (a new tensor would leave the graph reading the captured one).
                meta.factor.mul_(factor)
            else:
                meta.factor = factor * meta.factor  # a device tensor from here on
            self._rescale_cached_rates(window.group, factor)
            meta.old_norm = None
            meta.meta_steps += 1
            rate = meta.factor * window.group["lr"]
            record = torch.stack([products[0], products[1], products[2], factor, rate.to(factor.dtype)])
            self._unread.append((meta.steps, window.index, meta.window_steps, first_window, record))
            meta.window_steps = 0
            meta.window_lr_sum = 0.0

    def _read_device_records(self) -> None:
        """Read the device-decided meta-steps into the history (one host sync for all of them)."""
        values = torch.stack([record for *_, record in self._unread]).tolist()
        gamma = self.gamma if self.gamma is not None else 0.33
        max_factor = self.max_factor if self.max_factor is not None else math.inf
        for (step, index, window_steps, first, _), (a, b, c, factor, rate) in zip(self._unread, values):
            status = newton_factor(a, b, gamma=gamma, max_factor=max_factor, first_window=first, c=c).status
            self._history.append(
                MetaStepRecord(
                    step=step,
                    group=index,
                    a=a,
                    b=b,
                    factor=factor,
                    lr=rate,
                    status=status,
                    c=c,
                    window_steps=window_steps,
                )
            )
        self._unread.clear()

    def _gather(self, index: int, leave_out: frozenset[int] = frozenset(), sum_b: bool = False) -> _Window:
        """A due group's tensors (local shards), its window's mean rate, and its partial inner products;
        without the parameters whose ``id`` is in ``leave_out``, and with ``b`` summed where ``sum_b``."""
        group = self.optimizer.param_groups[index]
        meta = self.group_meta[index]
        params, snapshots, prev_updates = [], [], []
        for param in group["params"]:
            param_state = self.state.get(param)
            if param_state and SNAPSHOT in param_state and (not leave_out or id(param) not in leave_out):
                params.append(param)
                snapshots.append(param_state[SNAPSHOT])
                prev_updates.append(param_state[PREV_UPDATE])
        lr_mean = meta.window_lr_sum / meta.window_steps
        if isinstance(lr_mean, Tensor) and self.host_sync:
            lr_mean = lr_mean.item()
        if isinstance(meta.prev_scale, Tensor) and self.host_sync:
            meta.prev_scale = meta.prev_scale.item()  # a checkpoint of host_sync=False, once
        # The buffers stay DTensors in ``state``; the math runs on the local shards, in place.
        window = _Window(
            index=index,
            group=group,
            meta=meta,
            sources=params,
            params=self._window_views(distributed.local_tensors(params)),
            snapshots=distributed.local_tensors(snapshots),
            prev_updates=distributed.local_tensors(prev_updates),
            lr_mean=lr_mean if isinstance(lr_mean, Tensor) else float(lr_mean),
            foreach=False,
            # Tensors of other dtypes fall back to the eager sums one by one (functional._fuses).
            fused=self.fused and all(fusable_device(p) for p in params),
        )
        window.foreach = not window.fused and self._use_foreach(window.params)
        # b = <u_old, u_old> is the last kept window's c (u_old is a copy of its u_new), unless the
        # parameters changed since (adopted, swapped, loaded): then it is summed again.
        window.known_b = not sum_b and meta.old_norm is not None and meta.old_norm_params == len(params)
        window.weighs = self._weighs_weights(meta)
        keys = distributed.group_by_key(params, self.process_group)
        if self.host_sync and all(key == () for key in keys):
            # No collective: the per-tensor partial sums go to the host as they are and are added there.
            # Raw sums: _host_sums scales them by the window's rate and the buffers' scale.
            window.host_partials, directions = window_partials_and_directions(
                window.params,
                window.snapshots,
                window.prev_updates,
                foreach=window.foreach,
                old_norm=not window.known_b,
                weights=window.weighs,
                fused=window.fused,
            )
            if directions is not None:
                window.directions = dict(enumerate(directions))
            return window
        for key, members in keys.items():
            products, directions = window_products_and_directions(
                [window.params[i] for i in members],
                [window.snapshots[i] for i in members],
                [window.prev_updates[i] for i in members],
                window.lr_mean,
                foreach=window.foreach,
                old_norm=not window.known_b,
                weights=window.weighs,
                old_scale=meta.prev_scale,
                fused=window.fused,
            )
            window.partial_sums[key] = products
            if directions is not None:
                window.directions.update(zip(members, directions))
        return window

    def _leave_out_nonfinite_starts(self, windows: list[_Window], sums: list[_WindowSums]) -> None:
        """Where a window's inner products are not finite, leave out of its sums the parameters whose
        weights were not finite at its start, and restart their window (snapshot <- w, u_old <- 0).

        Their displacement is NaN even where they never moved (NaN - NaN), and a rollback would restore
        the same values: they say nothing about the rate, and without this a frozen parameter holding a
        NaN (``torch.empty`` never initialised, as in torch's own foreach-vs-for-loop test, kept by an
        optimizer such as Adagrad that makes state for every parameter) rolled every window back and cut
        the rate x0.3 each time. Weights that went non-finite during the window started finite and stay
        in the sums, so a divergence is still seen, and so do a window's tensors where all of them started
        non-finite (a model that diverged as a whole: the rule sees that as before). This path costs host
        reads of its own (a window whose sums are not finite is rare); a window that uses a collective is
        summed again on every process (the reduced sums, hence the choice to sum again, are the same on
        all of them).
        """
        redo: list[tuple[int, frozenset[int]]] = []
        for row, window_sums in enumerate(sums):
            if all(math.isfinite(x) for x in (window_sums.a, window_sums.b, window_sums.c)):
                continue
            window = windows[row]
            started = _all_finite(window.snapshots)
            if not any(started):
                # All of them: the window's weights are non-finite as a whole, as the rule is told.
                started = [True] * len(started)
            left_out = frozenset(id(src) for src, finite in zip(window.sources, started) if not finite)
            stale = [i for i, finite in enumerate(started) if not finite]
            restart_window_([window.params[i] for i in stale], [window.snapshots[i] for i in stale])
            for i in stale:
                window.prev_updates[i].zero_()
            if left_out:
                self._warn_once(
                    "nonfinite_start",
                    f"TLR: {len(left_out)} parameter(s) held non-finite values at a window's start (never "
                    "initialised, or frozen at inf/NaN?): they are left out of the rate's statistics, and "
                    "a window whose sums they alone made non-finite is not rolled back",
                )
            if left_out or window.host_partials is None:
                redo.append((row, left_out))
        if not redo:
            return
        again = [self._gather(windows[row].index, leave_out, sum_b=True) for row, leave_out in redo]
        for (row, _), window, window_sums in zip(redo, again, self._reduce_and_sync(again, losses=False)):
            windows[row] = window
            sums[row] = sums[row]._replace(
                a=window_sums.a, b=window_sums.b, c=window_sums.c, weights_sq=window_sums.weights_sq
            )

    def _reduce_and_sync(self, windows: list[_Window], losses: bool = True) -> list[_WindowSums]:
        """Sum the partial inner products over the processes holding the shards and bring them to the
        host with the windows' losses: the meta-step's one host sync, for all due groups together. A
        window without a collective sends its per-tensor partial sums, which the host adds in float64
        (``math.fsum``: correctly rounded). The losses travel as they are (a window's worth of numbers)
        and are summed on the host, loss by loss in float64, as a running sum would."""
        reduced = [window for window in windows if window.host_partials is None]
        partials = [window.host_partials for window in windows if window.host_partials is not None]
        payload: list[Tensor | list[Tensor]] = []
        width = 0
        if reduced:
            inner_products = _reduced_products(reduced)
            width = inner_products.shape[1]
            payload.append(inner_products.reshape(-1))
        payload += partials
        shapes: list[tuple[int, int]] = []  # per window: (losses carried in, losses logged)
        observes = self.observes_loss and losses
        if observes:
            for window in windows:
                logged, carried, carried_count = self._close_loss_window(window.meta)
                if carried_count:
                    assert carried is not None
                    payload.append(carried)
                if logged:
                    payload.append(_scalars(logged) or _stacked(logged))
                shapes.append((carried_count, len(logged)))
        values = _read(payload)  # the one host sync of the meta-step
        reduced_rows = iter(range(len(reduced)))
        at_partials = width * len(reduced)
        at = at_partials + sum(len(part) for part in partials)
        sums = []
        for row, window in enumerate(windows):
            if window.host_partials is None:
                start = width * next(reduced_rows)
                a, b, c = values[start : start + 3]
                weights_sq = values[start + 3] if window.weighs else math.nan
            else:
                a, b, c, weights_sq = _host_sums(values, at_partials, window)
                at_partials += len(window.host_partials)
            if window.known_b and window.meta.old_norm is not None:
                b = window.meta.old_norm
            window_losses, count = None, 0
            if observes:
                carried_count, n_logged = shapes[row]
                carried_sums = values[at : at + _LOSS_SUMS] if carried_count else None
                at += _LOSS_SUMS if carried_count else 0
                window_losses = LossSums(
                    *host_loss_sums(values[at : at + n_logged], carried_sums, carried_count)
                )
                at += n_logged
                count = carried_count + n_logged
            sums.append(_WindowSums(a, b, c, window_losses, count, weights_sq))
        return sums

    def _window_stats(self, window: _Window, sums: _WindowSums) -> WindowStats:
        loss_now, loss_prev = self._window_losses(window, sums)
        beta = first_moment(window.group)
        # The gradients are read only for a window that did not move or whose loss did not change at all
        # (rare), once for both flags (a full-batch window that stands still has both), and only for a
        # rule that reads them: the paper's collapses its rate until the weights stand still, and would
        # pay the reads at every meta-step.
        motionless = sums.b == 0.0 and sums.c == 0.0
        unchanged = loss_unchanged(loss_now, loss_prev)
        moving = bool(
            getattr(self.rule, "uses_stalled", True)
            and (motionless or unchanged)
            and self._moving_gradients(window)
        )
        return WindowStats(
            a=sums.a,
            b=sums.b,
            c=sums.c,
            lr=self._effective_lr(window.group, window.meta),
            window=window.meta.meta_steps,
            steps=window.meta.window_steps,
            loss=loss_now,
            prev_loss=loss_prev,
            momentum=beta,
            weights_sq=sums.weights_sq,
            annealed=self.total_steps is not None,
            warmup=_momentum_warmup(window.group, beta, window.meta.window_steps),
            stalled=moving and motionless and self._stalled(window),
            loss_unresolved=moving and unchanged,
        )

    def _stalled(self, window: _Window) -> bool:
        """Whether a group whose weights did not move, with finite, nonzero gradients
        (:meth:`_moving_gradients`, asked first), had no step of the window's rate along them register in
        the weights: its steps fell below the weights' rounding. Asked only of such a window, so its reads
        cost nothing otherwise; not of a sketch (other coordinates may have moved), nor of a fused inner
        step told to skip by ``found_inf``.

        Each entry's step is taken as ``rate * min(|g|, 1)``, no more than SGD's ``rate * |g|`` nor the
        Adam family's steps of about ``rate``; where it reaches the weight's resolution ``eps * |w|`` the
        inner optimizer could have moved it and did not (L-BFGS stops at its tolerances: around it the rate
        climbed x100 a window, to 1e20 within 60 steps), so raising the rate is no remedy."""
        if self.sketch is not None:
            return False
        found_inf = getattr(self.optimizer, "found_inf", None)
        if isinstance(found_inf, Tensor) and bool(found_inf.ne(0).any()):
            return False  # a fused step told to skip (GradScaler's verdict): nothing was too small
        rate = float(window.lr_mean)
        below = [
            (rate * p.grad.abs().clamp(max=1.0) < torch.finfo(p.dtype).eps * p.abs()).all()
            for p in window.sources
            if p.grad is not None and not p.grad.is_sparse and p.is_floating_point()
        ]
        return not below or all(bool(flag) for flag in torch.stack(below).tolist())

    def _moving_gradients(self, window: _Window) -> bool:
        """Whether the group's gradients are finite and not all zero; False for sharded tensors (each
        process sees its own shard's gradients, and the processes must decide alike)."""
        if any(distributed.is_dtensor(p) for p in window.sources):
            return False
        grads = [p.grad for p in window.sources if p.grad is not None]
        grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
        if not grads:
            return False
        return all(_all_finite(grads)) and any(bool(g.ne(0).any()) for g in grads)

    def _decide(self, window: _Window, stats: WindowStats) -> MetaStepDecision:
        """The rule's decision, then the loss guard, a schedule's hold and the dtype's rate limit."""
        group = window.group
        # Asked before the rule decides: the window whose step down settles the search still belongs to it.
        searching = self._searching(window.meta)
        decision = self.rule.decide(stats, window.meta.rule_state)
        if self.loss_guard and not decision.rollback:
            decision = guarded_factor(
                decision,
                stats.loss,
                stats.prev_loss,
                gamma=self.gamma if self.gamma is not None else 0.33,
                tolerance=self.loss_guard_tolerance,
                z=self.loss_guard_z,
            )
        if decision.status == Status.NONFINITE or (
            decision.rollback and not math.isfinite(stats.a + stats.b + stats.c)
        ):
            self._warn_once(
                "nonfinite",
                "TLR: a window's inner products are not finite: the model diverged. "
                + (
                    "The window was rolled back and the rate lowered."
                    if decision.rollback
                    else "The rate was kept; lower the initial lr, or use TLR(rule='robust'), which "
                    "rolls such windows back."
                ),
            )
        if (
            not decision.rollback
            and decision.factor != 1.0
            and self._schedule_holds(group, window.meta, decision, stats, searching)
        ):
            decision = MetaStepDecision(1.0, Status.SCHEDULE_HOLD)
        if decision.factor > 1.0 and stats.lr * decision.factor > _rate_limit(group):
            # A rate the parameters' dtype cannot hold would crash the inner step (torch converts lr
            # to it); only a rule that keeps climbing (the paper's, on a loss without curvature)
            # gets here.
            decision = MetaStepDecision(1.0, Status.CAPPED)
            self._warn_once(
                "rate_limit",
                "TLR: the trained rate reached the largest value the parameters' dtype holds and was "
                "kept there; the loss has no curvature along the steps (is it bounded below?)",
            )
        return decision

    def _apply(self, window: _Window, decision: MetaStepDecision, stats: WindowStats) -> None:
        """Roll the window back or keep it, and rescale the group's rate."""
        meta = window.meta
        undone = False  # the kept window undone too: u_old cleared
        if decision.rollback:
            # Back to the window's start: u_old and the snapshot stay, and so does the loss the next
            # window is compared with.
            if self.sketch is None:
                rollback_window_(window.params, window.snapshots, foreach=window.foreach)
                if decision.deeper:
                    undo_kept_window_(
                        window.params, window.snapshots, window.prev_updates, foreach=window.foreach
                    )
                    meta.prev_loss = None  # the loss before the kept window is not known
                    undone = True
            else:
                # A sketch cannot restore the weights: the window restarts where they are (the rate cut
                # and the cleared momentum still act).
                restart_window_(window.params, window.snapshots, foreach=window.foreach)
            param_states = self._param_states(window.group)
            reset_inner_momentum_(param_states)
            if decision.restart:
                restart_inner_statistics_(param_states)
        else:
            # The just-closed direction becomes u_old, and the snapshot restarts at the current weights.
            # Copied, not swapped: the buffers keep their identity in ``state``, which a torch.compile'd
            # inner step guards on.
            _advance(window)
            if self.observes_loss:
                meta.prev_loss = stats.loss
        # What the next window's b will be: u_old stays after a rollback (cleared where the kept window was
        # undone too) and is u_new after a keep.
        meta.old_norm = 0.0 if undone else stats.b if decision.rollback else stats.c
        meta.old_norm_params = len(window.params)
        meta.factor *= decision.factor
        meta.meta_steps += 1
        if decision.factor != 1.0:
            self._rescale_cached_rates(window.group, decision.factor)

    def _param_states(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.state[p] for p in group["params"] if p in self.state]

    def _rescale_cached_rates(self, group: dict[str, Any], factor: float | Tensor) -> None:
        # Only ASGD caches its rate between steps; the others' meta-steps skip the walk over the states.
        if isinstance(self.optimizer, torch.optim.ASGD):
            rescale_cached_rates_(self._param_states(group), factor)

    def _record(self, window: _Window, decision: MetaStepDecision, stats: WindowStats) -> None:
        meta = window.meta
        self._history.append(
            MetaStepRecord(
                step=meta.steps,
                group=window.index,
                a=stats.a,
                b=stats.b,
                factor=decision.factor,
                lr=self._effective_lr(window.group, meta),
                status=decision.status,
                c=stats.c,
                window_steps=meta.window_steps,
            )
        )
        meta.window_steps = 0
        meta.window_lr_sum = 0.0

    def _searching(self, meta: GroupMeta) -> bool:
        """Whether the rule says it is still finding the rate's scale (``Rule.searching``; False for a rule
        that does not say)."""
        searching = getattr(self.rule, "searching", None)
        return bool(searching(meta.rule_state)) if searching is not None else False

    def _schedule_holds(
        self,
        group: dict[str, Any],
        meta: GroupMeta,
        decision: MetaStepDecision,
        stats: WindowStats,
        searching: bool,
    ) -> bool:
        """Whether a schedule overrules the rule's factor. During ``total_steps``' decay the factor holds
        (only rollbacks act: the decay is the schedule). Below a user's schedule's peak rate, a rule that
        had found the rate's scale holds too: a climb would read the scheduled cut as "too small a rate"
        and undo it, and its steps down would compound with the schedule's decay (the schedule anneals;
        only rollbacks act). A rule still searching (``searching``, asked before it decided) steps down and
        climbs freely, whatever the schedule has cut: the search finds the rate that is right at the time,
        and the schedule anneals from there once it has settled. A settled rule's climb passes while the
        schedule has cut less than half where the window made progress (``Rule.progressed``, asked only
        here; a search can settle early, far below the rate's scale, and a schedule's cut alone makes no
        progress); a deeper cut (StepLR's halving) holds it. A tensor lr is not read (that would sync)."""
        if not getattr(self.rule, "holds_under_schedules", False):
            return False  # the paper's rule stays Eq. 8 exactly, whatever the schedule
        if self._ramp(meta) < 1.0:
            return True
        lr = group["lr"]
        if isinstance(lr, Tensor) or not lr < meta.schedule_peak * (1.0 - 1e-9):
            return False
        if searching:
            # A search finds the rate that is right now, whatever the schedule has cut so far: held past
            # the half, it stopped short of the scale in the short runs (50 steps, digits at batch 256:
            # medians 1.3-1.4 instead of 0.2-0.26 under cosine, warm-up + cosine and multi-step).
            return False
        if decision.factor < 1.0:
            return True
        if lr <= 0.5 * meta.schedule_peak:
            return True
        progressed = getattr(self.rule, "progressed", None)
        return not (progressed is not None and bool(progressed(stats)))

    def _effective_lr(self, group: dict[str, Any], meta: GroupMeta) -> float:
        """The rate the group's next step takes: its lr × the trained factor × the decay's ramp."""
        return float(group["lr"]) * float(meta.factor) * self._ramp(meta)

    def _ramp(self, meta: GroupMeta) -> float:
        """The budget-aware decay's multiplier for the group's next step (1 without ``total_steps``)."""
        return anneal_multiplier(meta.steps, self.total_steps, self.anneal_steps)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=_user_stacklevel())

    # -- the window's losses ---------------------------------------------------------------------------
    def _logged(self, meta: GroupMeta) -> list[Tensor | float]:
        """The losses of ``meta``'s open window still in the log."""
        return self._log.entries[meta.loss_start - self._log.start :]

    def _open_window_sums(self, meta: GroupMeta) -> tuple[Tensor | None, int]:
        """The LOSS_SUMS sums of ``meta``'s open window (carried + its part of the log) and their count,
        on the losses' device without a host sync; (None, 0) before its first loss."""
        logged = self._logged(meta)
        if not logged:
            return meta.carried, meta.carried_count
        sums = loss_window_sums(_stacked(logged), meta.carried, meta.carried_count)
        return sums, meta.carried_count + len(logged)

    def _close_loss_window(self, meta: GroupMeta) -> tuple[list[Tensor | float], Tensor | None, int]:
        """The losses of ``meta``'s window still in the log, and the sums and count carried in before them;
        the next window starts empty."""
        logged = self._logged(meta)
        carried, carried_count = meta.carried, meta.carried_count
        meta.carried, meta.carried_count = None, 0
        meta.loss_start = self._log.start + len(self._log.entries)
        return logged, carried, carried_count if carried is not None else 0

    def _trim_loss_log(self) -> None:
        """Drop the losses every group's window has passed."""
        if not self._log.entries:
            return
        start = min((meta.loss_start for meta in self.group_meta), default=self._log.start)
        drop = start - self._log.start
        if drop > 0:
            del self._log.entries[:drop]
            self._log.start = start

    def _fold_loss_log(self) -> None:
        """Fold the whole log into each group's carried sums (no host sync), so that it stays short."""
        end = self._log.start + len(self._log.entries)
        for meta in self.group_meta:
            sums, count = self._open_window_sums(meta)
            meta.carried, meta.carried_count, meta.loss_start = sums, count, end
        self._log.entries.clear()
        self._log.start = end

    def _window_losses(
        self, window: _Window, sums: _WindowSums
    ) -> tuple[WindowLoss | None, WindowLoss | None]:
        """This window's loss and the previous kept one's."""
        if not self.observes_loss:
            return None, None
        assert sums.losses is not None
        loss_now = sums.losses.window_loss(sums.loss_count)
        if window.group.get("maximize", False):
            # The inner optimizer climbs this objective: the rule and the guard read it as a loss to
            # minimise. Stored so, the previous window's loss needs no flip.
            loss_now = negated(loss_now)
        if loss_now is None and self.loss_guard:
            self._warn_once(
                "no_loss",
                "TLR(loss_guard=True) saw no loss in a window, so it guarded nothing: pass a closure to "
                "step() or call observe_loss(loss) every step",
            )
        elif loss_now is None and self.rule.uses_loss:
            # The README's measurement: the robust rule without its loss ends worse, so say it once.
            self._warn_once(
                "no_rule_loss",
                f"TLR: the rule {self.rule.name!r} reads the training loss, but a window closed without one, "
                "so its loss safeguards were off: call opt.observe_loss(loss) before each opt.step(), or "
                "pass a closure to step(); to train without the loss (and silence this), choose a rule that "
                "reads none, e.g. TLR(..., rule=ntlr.RobustRule(uses_loss=False)) or rule='paper'",
            )
        return loss_now, window.meta.prev_loss

    # -- the per-group records -------------------------------------------------------------------------
    def _sync_meta(self) -> list[GroupMeta]:
        """The records, one per param group: groups added straight to the inner optimizer get fresh ones."""
        metas = self.group_meta
        while len(metas) < len(self.optimizer.param_groups):
            metas.append(self._fresh_meta())
        return metas

    def _fresh_meta(self) -> GroupMeta:
        # A new group's window starts with the next loss.
        return GroupMeta(
            rule_state=fresh_rule_state(self.rule), loss_start=self._log.start + len(self._log.entries)
        )

    def _meta_keys(self) -> list[str]:
        """The ``tlr_*`` entries a state dict's param group holds (fixed from construction on: DCP loads
        into the structure of a fresh optimizer's state dict)."""
        keys = [FACTOR, STEPS, WINDOW_STEPS, WINDOW_LR_SUM, META_STEPS, SCHEDULE_PEAK, RULE_STATE, PREV_SCALE]
        return [*keys, LOSS_SUM, LOSS_COUNT, PREV_LOSS] if self.observes_loss else keys

    def _meta_entry(self, meta: GroupMeta, key: str) -> Any:
        """One of ``meta``'s state dict entries, as a plain value (a copy)."""
        if key == WINDOW_LR_SUM:
            lr_sum = meta.window_lr_sum
            return lr_sum.clone() if isinstance(lr_sum, Tensor) else lr_sum
        if key == PREV_SCALE:
            scale = meta.prev_scale
            return scale.clone() if isinstance(scale, Tensor) else scale
        if key == RULE_STATE:
            # [key, value] pairs, a copy (the rule updates its live state in place); load_state_dict
            # takes a dict too.
            return rule_state_pairs(meta.rule_state)
        if key == LOSS_SUM:
            sums, _ = self._open_window_sums(meta)
            # A tensor from construction on (zeros before the first loss): DCP loads into a fresh state
            # dict's structure and would reject a tensor where the fresh one holds None.
            return torch.zeros(_LOSS_SUMS, dtype=torch.float64) if sums is None else sums.clone()
        if key == LOSS_COUNT:
            return meta.carried_count + len(self._logged(meta))
        if key == PREV_LOSS:
            prev = meta.prev_loss
            return None if prev is None else [getattr(prev, f.name) for f in fields(prev)]
        plain = {
            FACTOR: "factor",
            STEPS: "steps",
            WINDOW_STEPS: "window_steps",
            META_STEPS: "meta_steps",
            SCHEDULE_PEAK: "schedule_peak",
        }
        value = getattr(meta, plain[key])
        # host_sync=False updates its device-tensor factor in place: a state dict holds a copy.
        return value.clone() if isinstance(value, Tensor) else value

    def _meta_from_entries(self, entries: dict[str, Any]) -> GroupMeta:
        """A record read back from a state dict's (or an older TLR's param group's) ``tlr_*`` entries;
        missing entries keep their fresh values."""
        meta = self._fresh_meta()
        meta.factor = float(entries.get(FACTOR, meta.factor))
        meta.steps = int(entries.get(STEPS, meta.steps))
        meta.window_steps = int(entries.get(WINDOW_STEPS, meta.window_steps))
        lr_sum = entries.get(WINDOW_LR_SUM, meta.window_lr_sum)
        meta.window_lr_sum = lr_sum.clone() if isinstance(lr_sum, Tensor) else float(lr_sum)
        meta.meta_steps = int(entries.get(META_STEPS, meta.meta_steps))
        # Missing from checkpoints written before the buffers kept the raw displacement: they hold u_old.
        scale = entries.get(PREV_SCALE, 1.0)
        meta.prev_scale = scale.clone() if isinstance(scale, Tensor) else float(scale)
        meta.schedule_peak = float(entries.get(SCHEDULE_PEAK, meta.schedule_peak))
        rule_state = entries.get(RULE_STATE)
        if isinstance(rule_state, dict | list):
            meta.rule_state = rule_state_from_pairs(self.rule, rule_state)
            if foreign_rule_state(self.rule, rule_state):
                self._warn_once(
                    "foreign_rule_state",
                    "TLR.load_state_dict: the checkpoint's rule state is not the state of this TLR's rule "
                    f"{getattr(self.rule, 'name', type(self.rule).__name__)!r}: the trained factors were "
                    "loaded, that rule's memory was not (load it into a TLR with the rule that wrote it to "
                    "resume exactly)",
                )
        elif rule_state is not None:
            meta.rule_state = rule_state  # a live state, from a pickled TLR
        count = int(entries.get(LOSS_COUNT, 0))
        sums = entries.get(LOSS_SUM)
        if count > 0 and isinstance(sums, Tensor) and sums.numel() == _LOSS_SUMS:
            meta.carried, meta.carried_count = sums.detach().clone(), count
        prev = entries.get(PREV_LOSS)
        meta.prev_loss = None if prev is None else WindowLoss(*prev)
        return meta

    # -- lazy snapshots --------------------------------------------------------------------------------
    def _refresh_pending(self, groups: list[dict[str, Any]]) -> None:
        # FSDP/ZeRO may swap group["params"] after construction, and users may add groups straight to
        # the inner optimizer: rebuild the pending list whenever the params lists are not the ones seen.
        if self._pending is not None and _same_params(groups, self._seen_params):
            return
        for meta in self._sync_meta():
            meta.old_norm = None  # the parameters may have changed: b is summed again
        self._seen_params = [group["params"] for group in groups]
        state = self.state
        # A parameter on the meta device holds no values: it has no window to measure (an optimizer made
        # over a model before it is materialised steps it as a no-op, or raises, as without TLR).
        self._pending = [
            p
            for group in groups
            for p in group["params"]
            if SNAPSHOT not in state.get(p, ()) and p.device.type != "meta"
        ]
        live = {id(p) for p in self._pending}
        self._pending_snapshots = {p: s for p, s in self._pending_snapshots.items() if id(p) in live}

    @torch.no_grad()
    def _snapshot_pending(self) -> None:
        assert self._pending is not None  # step() calls it after _refresh_pending
        for param in self._pending:
            if param not in self._pending_snapshots:
                if self.sketch is not None and distributed.is_dtensor(param):
                    raise ValueError(
                        "TLR(sketch=...) does not support DTensor (FSDP2) parameters: their local shards "
                        "change layout with the mesh; use sketch=None"
                    )
                self._pending_snapshots[param] = self._window_view(param.detach()).clone()

    def _adopt_pending(self) -> None:
        # A parameter's buffers go into ``state`` only once the inner optimizer has had its chance to
        # initialise it (AdamW initialises on ``len(state) == 0``). Until then it had no grad, so it has
        # not moved and its pending snapshot is still the window start.
        assert self._pending is not None  # step() calls it after _refresh_pending
        still_pending = []
        for param in self._pending:
            param_state = self.state.get(param)
            if not param_state and param.grad is None:
                still_pending.append(param)
                continue
            param_state = self.state[param]
            snapshot = param_state[SNAPSHOT] = self._pending_snapshots.pop(param)
            param_state[PREV_UPDATE] = torch.zeros_like(snapshot, memory_format=torch.preserve_format)
        self._pending = still_pending


@dataclass
class _LossLog:
    """The losses logged since the oldest open window began, and the absolute index of the first."""

    entries: list[Tensor | float] = field(default_factory=list)
    start: int = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.pop("views", None)  # pickled before the views had their own cache
        self.__dict__.update(state)


@dataclass
class _ViewCache:
    """The param group views :attr:`TLR.param_groups` returns, rebuilt when the inner optimizer's groups
    change; not pickled (rebuilt on access)."""

    views: list[_GroupView] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"views": None}


@dataclass
class _Window:
    """A due group's window at a meta-step: its tensors (local shards), mean rate and partial sums."""

    index: int
    group: dict[str, Any]
    meta: GroupMeta
    sources: list[Tensor]  # the group's parameters behind ``params`` (which may be shards or sketches)
    params: list[Tensor]
    snapshots: list[Tensor]
    prev_updates: list[Tensor]
    lr_mean: float | Tensor  # a tensor only with host_sync=False
    foreach: bool
    fused: bool = False  # TLR(fused=True): the compiled one-pass kernels (functional._fused)
    known_b: bool = False  # b is the record's old_norm, not summed here
    weighs: bool = False  # the sums carry <s, s> (the rule asked for it)
    # Per reduction key, the [a, b, c] partial sums of the parameters it covers.
    partial_sums: dict[distributed.ReductionKey, Tensor] = field(default_factory=dict)
    # u_new of each parameter (by position) where the foreach path formed it: the window's advance copies it.
    directions: dict[int, Tensor] = field(default_factory=dict)
    # Without a collective: the per-tensor partial sums (window_partials_and_directions), added on the host.
    host_partials: list[Tensor] | None = None


class _WindowSums(NamedTuple):
    """A window's sums as the meta-step's host sync returns them."""

    a: float
    b: float
    c: float
    losses: LossSums | None  # None when nothing reads the loss
    loss_count: int
    weights_sq: float = math.nan  # <w, w> at the window's start, where the rule asked for it


def _on(optimizer: Optimizer, hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook`` called with ``optimizer`` in place of the optimizer that runs it (the wrapper)."""

    def called(_: Optimizer, *args: Any) -> Any:
        return hook(optimizer, *args)

    return called


def _takes_state(hook: Callable[..., Any]) -> bool:
    """Whether a rule's ``uses_weight_norm`` callable takes the group's rule state after ``kept``."""
    # A bound method is asked of its function (cached: a class attribute lives as long anyway), so the
    # cache holds no rule instance alive; any other callable is inspected each time (not a per-step path).
    func = getattr(hook, "__func__", None)
    if isinstance(func, types.FunctionType):
        return _function_takes_state(func, 1)
    return _signature_takes_state(hook, 0)


@functools.lru_cache(maxsize=64)
def _function_takes_state(func: types.FunctionType, bound: int) -> bool:
    return _signature_takes_state(func, bound)


def _signature_takes_state(hook: Callable[..., Any], bound: int) -> bool:
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) - bound >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def _all_finite(tensors: list[Tensor]) -> list[bool]:
    """Whether each tensor holds only finite values: one host read where they share a device."""
    flags = [torch.isfinite(tensor).all() for tensor in tensors]
    if flags and len({flag.device for flag in flags}) == 1:
        return [bool(flag) for flag in torch.stack(flags).tolist()]
    return [bool(flag) for flag in flags]


def _fsum(values: list[float]) -> float:
    """``math.fsum``, or where it raises (+inf and -inf among the values, or finite ones whose sum overflows:
    weights that overflowed both ways) the plain sum, NaN or ±inf, which the rule reads as non-finite."""
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):
        return sum(values)


def _host_sums(values: list[float], at: int, window: _Window) -> tuple[float, float, float, float]:
    """``a, b, c, <s, s>`` of ``window`` from its per-tensor raw partial sums at ``values[at:]`` (rows of
    ``len(window.params)``, scaled here: see :func:`window_partials_and_directions`); ``b`` is 0 where it
    was not summed (known), ``<s, s>`` NaN where not asked for."""
    n = len(window.params)
    rows = 2 + (not window.known_b) + window.weighs
    sums = [_fsum(values[at + row * n : at + (row + 1) * n]) for row in range(rows)]
    scale_a, scale_b, scale_c = window_scales(float(window.lr_mean), float(window.meta.prev_scale))
    b = 0.0 if window.known_b else sums[1] * scale_b
    c = sums[1 if window.known_b else 2] * scale_c
    return sums[0] * scale_a, b, c, sums[-1] if window.weighs else math.nan


def _scalars(losses: list[Tensor | float]) -> list[Tensor]:
    """The logged losses where all are 0-dim floating-point tensors (then they join the payload's one
    stack, whose dtype holds them exactly), else []."""
    if all(isinstance(loss, Tensor) and loss.dim() == 0 and loss.is_floating_point() for loss in losses):
        return losses  # type: ignore[return-value]  # all tensors, checked
    return []


def _read(parts: list[Tensor | list[Tensor]]) -> list[float]:
    """The parts' values in order as floats, in one host sync: 1-D tensors and lists of 0-dim ones (a
    window's partial sums, its losses). Where all are lists on one device (a small model's meta-step),
    one ``torch.stack`` joins them, else a ``torch.cat`` on the first part's device; either puts them in
    the widest dtype, which holds every value exactly."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return []
    if all(isinstance(part, list) for part in parts) and len({part[0].device for part in parts}) == 1:
        return torch.stack([value for part in parts for value in part]).tolist()
    tensors = [part if isinstance(part, Tensor) else torch.stack(part) for part in parts]
    device = tensors[0].device
    joined = torch.cat([tensor if tensor.device == device else tensor.to(device) for tensor in tensors])
    return joined.tolist()


def _stacked(losses: list[Tensor | float]) -> Tensor:
    """Logged losses as one 1-D tensor in the sum dtype, where they are (no host sync)."""
    tensors = [x for x in losses if isinstance(x, Tensor)]
    device = tensors[0].device if tensors else torch.device("cpu")
    return stack_losses(losses, device)


class _GroupList(list[Any]):
    """TLR's ``param_groups``: views of the inner optimizer's groups, in a list whose changes in place
    (append, extend, insert, assignment, deletion, ...) reach the inner optimizer's own list, as they do
    a plain optimizer's (torch's own tests extend ``param_groups`` so). Each group keeps its record in
    ``group_meta``; a group new to the list gets a fresh one, a repeated one a copy."""

    def __init__(self, tlr: TLR, views: list[_GroupView]) -> None:
        super().__init__(views)
        self._tlr = tlr

    # A copy or a pickle is a plain list: rebuilt item by item through append, it would write every
    # partial list through to the optimizer (and drop the records of the groups not yet appended).
    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return copy.deepcopy(list(self), memo)

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (list, (list(self),))

    def _write_through(self) -> None:
        tlr = self._tlr
        metas = tlr._sync_meta()
        groups: list[dict[str, Any]] = []
        new_metas: list[GroupMeta] = []
        for entry in self:
            view = entry if isinstance(entry, _GroupView) and entry.tlr is tlr else None
            meta = metas[view.index] if view is not None and view.index < len(metas) else tlr._fresh_meta()
            new_metas.append(copy.deepcopy(meta) if any(m is meta for m in new_metas) else meta)
            groups.append(view.group if view is not None else getattr(entry, "group", entry))
        tlr.optimizer.param_groups[:] = groups  # the inner's list keeps its identity
        tlr.group_meta[:] = new_metas
        # This list's views take their new indices (a second change through the same list must find each
        # group's record where it now is), and it stays what param_groups returns.
        list.__setitem__(self, slice(None), [_GroupView(tlr, i, group) for i, group in enumerate(groups)])
        tlr._view_cache.views = self
        tlr._pending = None  # the parameters may have changed

    def append(self, value: Any) -> None:
        super().append(value)
        self._write_through()

    def extend(self, values: Any) -> None:
        super().extend(list(values))
        self._write_through()

    def insert(self, index: SupportsIndex, value: Any) -> None:
        super().insert(index, value)
        self._write_through()

    def pop(self, index: SupportsIndex = -1) -> Any:
        value = super().pop(index)
        self._write_through()
        return value

    def remove(self, value: Any) -> None:
        super().remove(value)
        self._write_through()

    def clear(self) -> None:
        super().clear()
        self._write_through()

    def reverse(self) -> None:
        super().reverse()
        self._write_through()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._write_through()

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._write_through()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._write_through()

    def __iadd__(self, values: Iterable[Any]) -> _GroupList:  # type: ignore[misc]  # list's is Self
        self.extend(values)
        return self

    def __imul__(self, times: SupportsIndex) -> _GroupList:
        super().__imul__(times)
        self._write_through()
        return self


class _GroupView(MutableMapping[str, Any]):
    """A param group as TLR shows it: the inner optimizer's group, plus TLR's entries of it read-only."""

    __slots__ = ("group", "index", "tlr")

    def __init__(self, tlr: TLR, index: int, group: dict[str, Any]) -> None:
        self.tlr = tlr
        self.index = index
        self.group = group

    def _is_tlr(self, key: object) -> bool:
        return isinstance(key, str) and key.startswith(_TLR_PREFIX) and key in self.tlr._meta_keys()

    def __getitem__(self, key: str) -> Any:
        if self._is_tlr(key):
            return self.tlr._meta_entry(self.tlr._sync_meta()[self.index], key)
        return self.group[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if self._is_tlr(key):
            raise KeyError(
                f"{key!r} is TLR's state, read-only here: it lives in TLR.group_meta[{self.index}]"
            )
        self.group[key] = value

    def __delitem__(self, key: str) -> None:
        if self._is_tlr(key):
            raise KeyError(
                f"{key!r} is TLR's state, read-only here: it lives in TLR.group_meta[{self.index}]"
            )
        del self.group[key]

    def __iter__(self) -> Iterator[str]:
        yield from self.group
        yield from self.tlr._meta_keys()

    def __len__(self) -> int:
        return len(self.group) + len(self.tlr._meta_keys())

    def __repr__(self) -> str:
        return repr(dict(self))


def _advance(window: _Window) -> None:
    """Keep ``window``: the u_old buffers <- its raw displacement (the foreach path's copy when it formed
    one), scaled by its mean rate (``GroupMeta.prev_scale``); snapshot <- w."""
    n = len(window.params)
    directions = [window.directions[i] for i in range(n)] if len(window.directions) == n else None
    advance_window_(
        window.params,
        window.snapshots,
        window.prev_updates,
        window.lr_mean,
        foreach=window.foreach,
        directions=directions,
        keep_scale=True,
        fused=window.fused,
    )
    meta, scale, old = window.meta, window.lr_mean, window.meta.prev_scale
    if isinstance(old, Tensor) and isinstance(scale, Tensor) and old.dtype == scale.dtype:
        old.copy_(scale)  # in place, as the factor (host_sync=False: see _meta_step_on_device)
    else:
        meta.prev_scale = scale.clone() if isinstance(scale, Tensor) else scale


def _reduced_products(windows: list[_Window]) -> Tensor:
    """The windows' ``[a, b, c]`` rows (``[a, b, c, <s, s>]`` when a window carries the weights' sum),
    each summed over the processes holding its parameters' shards."""
    # Partial sums per reduction key (which process groups hold the rest of a parameter's entries):
    # one key, hence one all_reduce, for a plain FSDP2 model; the empty key (no collective) otherwise.
    # Rows of 4 when a window carries <s, s> (its decision is the same on every rank: it follows the
    # reduced sums); the fourth entry of the others is 0 and unread.
    width = 4 if any(window.weighs for window in windows) else 3
    partial_sums: dict[distributed.ReductionKey, dict[int, Tensor]] = {}
    for row, window in enumerate(windows):
        for key, products in window.partial_sums.items():
            if len(products) < width:
                products = torch.cat([products, products.new_zeros(width - len(products))])
            partial_sums.setdefault(key, {})[row] = products
    return distributed.reduce_partial_sums(partial_sums, len(windows), width)


def _same_params(groups: list[dict[str, Any]], seen: list[list[Tensor]]) -> bool:
    """Whether each group's params list is the one seen (every step asks: a loop, not a generator)."""
    if len(groups) != len(seen):
        return False
    for group, params in zip(groups, seen):
        if group["params"] is not params:
            return False
    return True


def _detached(loss: Tensor | float) -> Tensor | float:
    return loss.detach() if isinstance(loss, Tensor) else float(loss)


def _check_loss(loss: object, what: str) -> None:
    if isinstance(loss, Tensor):
        if loss.numel() != 1:
            raise ValueError(f"{what} must be a one-element tensor, got shape {tuple(loss.shape)}")
    elif not _is_real(loss):
        raise TypeError(f"{what} must be a Tensor or a real number, got {type(loss).__name__}")


def _pop_tlr_entries(group: dict[str, Any]) -> dict[str, Any]:
    """Take the ``tlr_*`` entries out of a param group (a state dict's, or an older TLR's live group)."""
    return {
        key: group.pop(key) for key in [k for k in group if isinstance(k, str) and k.startswith(_TLR_PREFIX)]
    }


def _same_loss(new: Tensor | float, seen: Tensor | float) -> bool:
    """Whether ``new`` is a loss already observed (``seen``): the same number, or a tensor on the same
    memory (the tensor itself, or a view of it such as ``loss.detach()``); comparing values would sync."""
    if isinstance(new, Tensor) and isinstance(seen, Tensor):
        try:
            return new.device == seen.device and new.data_ptr() == seen.data_ptr()
        except (RuntimeError, NotImplementedError):  # tensor subclasses without storage
            return new is seen
    return not isinstance(new, Tensor) and not isinstance(seen, Tensor) and float(new) == seen


# -- torch's global step hooks ---------------------------------------------------------------------------
# torch.optim.register_optimizer_step_{pre,post}_hook hooks are kept in two module-level dicts that the
# wrapper of every Optimizer subclass's step reads. TLR.step has that wrapper, and so has the inner step it
# calls, so each global hook would fire twice per TLR step.
#
# Where nothing is attached to the inner instance (no step hooks of its own, no ``step`` attribute of its
# own: an LR scheduler's step counter, a torch.compile'd or a framework's wrapped ``inner.step``) and no
# profiler is recording, the inner step is its class's unwrapped function (``type(inner).step.__wrapped__``):
# all the wrapper would add is the global hooks, which must not fire for it, and a profiler range, which
# costs about 30 µs a step with nothing recording it (on a small MLP that was most of TLR's per-step cost).
# Otherwise it is called as ``inner.step`` and, for the duration of that call, each global hook is
# replaced in place by one that does nothing for that inner optimizer and forwards any other: the dicts
# keep their identity, so hooks registered or removed meanwhile land in the real dicts, and another
# optimizer stepped meanwhile (by a hook, or in another thread) still fires them.
_GLOBAL_HOOKS_LOCK = threading.Lock()
# Reentrant: a state dict hook may itself pack a (another) TLR's state dict.
_STATE_DICT_HOOKS_LOCK = threading.RLock()


def _unwrapped_step(optimizer: Optimizer) -> Callable[..., Any] | None:
    """The inner optimizer's step without torch's wrapper, where calling it so skips nothing but the
    global hooks and an unrecorded profiler range; ``None`` otherwise."""
    if torch._C._autograd._profiler_enabled():
        return None  # the profiler shows the inner step under its own name
    own = getattr(optimizer, "__dict__", None)
    if own is None or "step" in own:
        return None
    if own.get("_optimizer_step_pre_hooks") or own.get("_optimizer_step_post_hooks"):
        return None
    step = type(optimizer).step
    if not getattr(step, "hooked", False):  # not torch's wrapper (a class that never ran Optimizer.__init__)
        return None
    return getattr(step, "__wrapped__", None)


def _plain_zero_grad(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.zero_grad(set_to_none=True)`` is torch's own and would only set each grad to
    None: no override in its class or on the instance, no profiler recording (which shows the call under
    its own name), no Dynamo trace (torch keeps its zero_grad out of compiled graphs)."""
    if type(optimizer).zero_grad is not Optimizer.zero_grad:
        return False
    if "zero_grad" in getattr(optimizer, "__dict__", ()):
        return False
    return not (torch._C._autograd._profiler_enabled() or torch.compiler.is_compiling())


def _inner_step(optimizer: Optimizer, closure: Callable[[], Any] | None) -> Any:
    """One step of the inner optimizer, without firing torch's global step hooks for it."""
    raw = _unwrapped_step(optimizer)
    if raw is not None:
        return raw(optimizer) if closure is None else raw(optimizer, closure)
    with _global_step_hooks_skip(optimizer):
        return optimizer.step() if closure is None else optimizer.step(closure)


class _SkipFor:
    """A global step hook that does nothing when called for ``optimizer``."""

    __slots__ = ("hook", "optimizer")

    def __init__(self, hook: Callable[..., Any], optimizer: Optimizer) -> None:
        self.hook = hook
        self.optimizer = optimizer

    def __call__(self, optimizer: Optimizer, args: Any, kwargs: Any) -> Any:
        if optimizer is self.optimizer:
            return None
        return self.hook(optimizer, args, kwargs)


def _without_skip(hook: Callable[..., Any], optimizer: Optimizer) -> Callable[..., Any]:
    """``hook`` without the :class:`_SkipFor` layer of ``optimizer`` (other TLRs' layers stay)."""
    if not isinstance(hook, _SkipFor):
        return hook
    if hook.optimizer is optimizer:
        return hook.hook
    hook.hook = _without_skip(hook.hook, optimizer)
    return hook


@contextlib.contextmanager
def _global_step_hooks_skip(optimizer: Optimizer) -> Iterator[None]:
    """Within the block, torch's global optimizer step hooks do not fire for ``optimizer``."""
    hook_dicts = (
        _torch_optimizer._global_optimizer_pre_hooks,
        _torch_optimizer._global_optimizer_post_hooks,
    )
    if not any(hook_dicts):  # the usual case: nothing to do
        yield
        return
    try:
        with _GLOBAL_HOOKS_LOCK:
            for hooks in hook_dicts:
                for key, hook in list(hooks.items()):
                    hooks[key] = _SkipFor(hook, optimizer)
        yield
    finally:
        with _GLOBAL_HOOKS_LOCK:
            for hooks in hook_dicts:
                for key, hook in list(hooks.items()):
                    hooks[key] = _without_skip(hook, optimizer)
