"""``TLR``: the Newton-based trainable learning rate as a wrapper around any ``torch.optim`` optimizer."""

from __future__ import annotations

import contextlib
import math
import numbers
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeGuard

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim import optimizer as _torch_optimizer

from . import distributed
from .functional import (
    MetaStepDecision,
    Status,
    WindowLoss,
    _sum_dtype,
    advance_window_,
    anneal_multiplier,
    guarded_factor,
    negated,
    reset_inner_momentum_,
    rollback_window_,
    window_inner_products,
)
from .history import MetaStepRecord
from .rules import (
    Rule,
    WindowStats,
    first_moment,
    fresh_rule_state,
    make_rule,
    rule_state_from_pairs,
    rule_state_pairs,
)

# The keys TLR adds to param groups and parameter states: their schema is ntlr.state.
from .state import (
    FACTOR,
    LOSS_COUNT,
    LOSS_SUM,
    META_STEPS,
    PREV_LOSS,
    PREV_UPDATE,
    RULE_STATE,
    SCHEDULE_PEAK,
    SNAPSHOT,
    STEPS,
    WINDOW_LR_SUM,
    WINDOW_STEPS,
)
from .state import GROUP_DEFAULTS as _GROUP_DEFAULTS
from .state import LOSS_DEFAULTS as _LOSS_DEFAULTS
from .state import LOSS_SUMS as _LOSS_SUMS
from .state import PREFIX as _TLR_PREFIX

__all__ = ["TLR"]

# Entries TLR keeps out of the param groups while the inner step runs: the rule's state and the last
# window's loss change late in training (a rule's first rollback) and hold structures. A compiled inner
# step guards on every value in its param groups, so it would recompile whenever one of them first
# changed; the inner step never reads them.
_HIDDEN_FROM_INNER = (RULE_STATE, PREV_LOSS)

# The rule TLR uses when none is named: chosen on the gauntlet's quick tier, confirmed on the paper's MNIST
# grid (docs/rules.md). rule="paper" is Eq. 8 exactly.
DEFAULT_RULE = "robust"


def _rate_limit(group: dict[str, Any]) -> float:
    """The largest rate every parameter of ``group`` can take as a step size (its dtype's largest value)."""
    limits = [torch.finfo(p.dtype).max for p in group["params"] if p.is_floating_point() or p.is_complex()]
    return min(limits, default=math.inf)


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
        raise TypeError(f"optimizer must be a torch.optim.Optimizer instance, got {type(optimizer).__name__}")
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
        if not _is_int(update_every):
            raise TypeError(f"update_every must be an int, got {type(update_every).__name__}")
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every}")
        return int(update_every)
    if not _is_int(steps_per_epoch):
        raise TypeError(f"steps_per_epoch must be an int, got {type(steps_per_epoch).__name__}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
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
      :meth:`get_lr` returns the effective rates;
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
        p: the fraction of an epoch per window, used with ``steps_per_epoch``.
        rule: what a meta-step does with the window statistics: a name from :data:`ntlr.RULES`
            (``"paper"``: Eq. 8 exactly; ``"robust"``: with rollback and safeguards, see
            :class:`ntlr.RobustRule`) or any object following :class:`ntlr.Rule`.
        gamma: the Newton damping γ ∈ (0, 1] of a named rule (default: the rule's own, 0.33).
        max_factor: the largest factor one meta-step of a named rule may apply (default: the paper's
            100). Set both on the object instead when ``rule`` is one.
        foreach: use multi-tensor ``torch._foreach`` kernels at meta-steps; ``None`` picks them when all
            parameters are on an accelerator.
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
            loop calls ``step()``; it is summed on its device, and the window sums travel in the
            meta-step's one host sync. A window with no observed loss is not guarded. In a group whose
            inner optimizer has ``maximize=True`` the observed value is the objective being climbed, and
            the rule and the guard read its negation.
        loss_guard_tolerance: a rise counts only above ``tolerance * |previous mean|`` (relative; >= 0).
        loss_guard_z: how many standard errors a rise must exceed to shrink the rate (>= 0; 0 shrinks
            after every rise). The default 1 was chosen on the digits benchmark (docs/safeguards.md).

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
        p: float = 0.2,
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
    ) -> None:
        self.total_steps, self.anneal_steps = _check_anneal(total_steps, anneal_fraction)
        self.update_every = _check_hyperparameters(
            optimizer, update_every, steps_per_epoch, p, gamma, max_factor
        )
        _check_loss_guard(loss_guard, loss_guard_tolerance, loss_guard_z)
        options = {k: float(v) for k, v in (("gamma", gamma), ("max_factor", max_factor)) if v is not None}
        self.rule: Rule = make_rule(rule, **options)
        self.loss_guard = loss_guard
        self.loss_guard_tolerance = float(loss_guard_tolerance)
        self.loss_guard_z = float(loss_guard_z)
        distributed.check_process_group(process_group)
        self.process_group = process_group
        self.optimizer = optimizer
        self.p = p if steps_per_epoch is not None else None
        self.foreach = foreach
        self._warned: set[str] = set()
        # Losses observed since the last step(), and steps taken since the last loss: what tells a loss
        # observed twice, or after its step, from one observed once before it. Kept (detached) until the
        # step, so that a new loss cannot reuse a freed one's memory and look like it.
        self._step_losses: list[Tensor | float] = []
        self._steps_without_loss = 0
        self._observed_any = False
        self.history: list[MetaStepRecord] = []
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
        for group in self.param_groups:
            self._set_group_defaults(group)
        self._warn_if_window_differs(stacklevel=3)
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
                stacklevel=2,
            )

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

    # -- the inner optimizer's live objects ------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

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
        for name, default in _LATER_ATTRIBUTES.items():
            state.setdefault(name, default() if callable(default) else default)
        self.__dict__.update(state)
        for group in self.param_groups:
            self._set_group_defaults(group)
            if isinstance(group.get(RULE_STATE), dict) and callable(getattr(self.rule, "init", None)):
                group[RULE_STATE] = rule_state_from_pairs(self.rule, group[RULE_STATE])
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
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params" and not k.startswith(_TLR_PREFIX)):
                lines.append(f"    {key}: {group[key]}")
            factor = group.get(FACTOR, 1.0)
            rate = float(group["lr"]) * factor
            lines.append(f"    trained lr: {rate:.6g} (lr × trained factor {factor:.6g})")
        inner = "\n".join(lines) + "\n)"
        return (
            f"TLR(update_every={self.update_every}, window={window}, rule={self.rule!r}, {guard}"
            f"optimizer={inner})"
        )

    # -- public API ------------------------------------------------------------------------------------
    def get_lr(self) -> list[float]:
        """The effective learning rate of each param group: its ``lr`` times the trained factor (and the
        decay's ramp, with ``total_steps``)."""
        return [self._effective_lr(group) for group in self.param_groups]

    def window_lengths(self) -> list[int]:
        """The window length K in counted steps that each param group's meta-steps use: ``update_every``,
        or longer where the rule lengthens it (:class:`ntlr.RobustRule`: the inner optimizer's momentum
        horizon)."""
        return [self._window_length(group) for group in self.param_groups]

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
        tensor (it is detached and added to a running sum on its own device, so no host sync happens
        here) or a real number. Under data parallelism pass the same loss on every process (e.g.
        the all-reduced mean): each process decides alone, and differing losses would give differing
        rates.

        Raises:
            RuntimeError: neither the rule nor the loss guard reads the loss (it would be ignored).
            TypeError: ``loss`` is neither a tensor nor a real number.
            ValueError: ``loss`` is a tensor with more than one element.
        """
        if not self.observes_loss:
            raise RuntimeError(
                f"observe_loss: the rule {self.rule.name!r} does not read the loss and the loss guard is "
                "off (TLR(..., loss_guard=True)), so the loss would be ignored"
            )
        self._observe_loss(loss, "loss")  # checks it, too
        if any(_same_loss(loss, seen) for seen in self._step_losses):
            self._warn_once(
                "observed_twice",
                "TLR.observe_loss got the same loss twice before one step(): it counts twice towards the "
                "window. Observe each loss once (several different losses before one step() count as its "
                "micro-batch losses, as with gradient accumulation)",
                stacklevel=3,
            )
        elif self._steps_without_loss == 1 and not self._observed_any:
            # The first loss right after the first step: the loop observes after step(). (After several
            # steps without one, the loop merely started late; a window without losses warns then.)
            self._warn_once(
                "observed_after_step",
                "TLR.observe_loss was called after step(): call it before step(), since the loss belongs "
                "to the window of the step it was computed before (it now counts towards the next step)",
                stacklevel=3,
            )
        self._step_losses.append(loss.detach() if isinstance(loss, Tensor) else float(loss))
        self._observed_any = True

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)
        self._set_group_defaults(self.param_groups[-1])
        self._pending = None
        self._warn_if_window_differs(stacklevel=3)

    def _warn_if_window_differs(self, stacklevel: int) -> None:
        windows = self.window_lengths()
        if all(window == self.update_every for window in windows):
            return
        window = windows[0] if len(set(windows)) == 1 else windows
        self._warn_once(
            "window",
            f"TLR: the rule {self.rule.name!r} uses windows of {window} steps, not the {self.update_every} "
            "asked for: a window shorter than the inner optimizer's momentum memory mostly repeats the "
            "previous one (repr and history show the window in use; RobustRule(momentum_windows=0) keeps "
            "the one asked for)",
            stacklevel=stacklevel + 1,
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        state_dict = super().state_dict()
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
        # The group entries keep one structure from construction on: DCP loads a checkpoint into the
        # structure of a fresh optimizer's state dict, and would reject a tensor where the fresh one holds
        # None, or skip the keys a fresh rule state lacks (they appear as the rule trains).
        if self.observes_loss:
            for group in state_dict["param_groups"]:
                if isinstance(group.get(LOSS_SUM), Tensor):
                    group[LOSS_SUM] = group[LOSS_SUM].clone()  # added to in place as well
                elif group.get(LOSS_SUM) is None:
                    group[LOSS_SUM] = torch.zeros(_LOSS_SUMS, dtype=torch.float64)  # no loss yet: all zero
        for group in state_dict["param_groups"]:
            if RULE_STATE in group:
                # [key, value] pairs, a copy (the rule updates its live state in place); load_state_dict
                # takes a dict too.
                group[RULE_STATE] = rule_state_pairs(group[RULE_STATE])
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Optimizer.load_state_dict ends in __setstate__, which writes __dict__ and would not reach the
        # inner optimizer through our properties: load into the inner one, running our own hooks.
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        self.optimizer.load_state_dict(state_dict)
        for group in self.param_groups:
            self._set_group_defaults(group)
            if isinstance(group.get(LOSS_SUM), Tensor):
                group[LOSS_SUM] = group[LOSS_SUM].clone()  # added to in place: never the caller's tensor
            if isinstance(group.get(RULE_STATE), dict | list):
                group[RULE_STATE] = rule_state_from_pairs(self.rule, group[RULE_STATE])
        self._pending = None
        self._pending_snapshots.clear()
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    # -- the step --------------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one inner step at the effective rates; every K counted steps, rescale the rates."""
        groups = self.param_groups
        self._refresh_pending(groups)
        if self._pending:
            self._snapshot_pending()

        scheduled = []
        for group in groups:
            lr = group["lr"]
            ramp = self._ramp(group)
            effective = lr * (group[FACTOR] * ramp)
            if not isinstance(lr, Tensor) and lr * ramp > group[SCHEDULE_PEAK]:
                group[SCHEDULE_PEAK] = float(lr * ramp)
            if ramp == 0.0:
                self._warn_once(
                    "past_total_steps",
                    f"TLR: past total_steps={self.total_steps}: the annealed rate is 0 and the weights no "
                    "longer move; raise total_steps to train on",
                )
            group["lr"] = effective
            scheduled.append((lr, effective, ramp))
        hidden = [{key: group.pop(key) for key in _HIDDEN_FROM_INNER if key in group} for group in groups]
        try:
            # This step fires torch's global step hooks (TLR.step is wrapped like any optimizer's); the inner
            # step must not fire them a second time, for the inner optimizer and before the meta-step.
            with _global_step_hooks_skip(self.optimizer):
                loss = self.optimizer.step() if closure is None else self.optimizer.step(closure)
        finally:
            for group, entries in zip(groups, hidden):
                group.update(entries)
            for group, (lr, effective, ramp) in zip(groups, scheduled):
                if group["lr"] is effective:
                    group["lr"] = lr
                else:
                    # The inner optimizer adapts its own rate (hypergradient-style): keep its change.
                    group["lr"] = group["lr"] / (group[FACTOR] * ramp) if ramp != 0.0 else lr

        observed = bool(self._step_losses)
        if self.observes_loss and loss is not None:
            if observed:
                self._warn_once(
                    "closure_and_observe",
                    "TLR.step(closure) on a step whose loss observe_loss already took: the closure's loss "
                    "was not counted again (use one or the other)",
                    stacklevel=4,
                )
            else:
                self._observe_loss(loss, "the closure's return value")
                observed = True
        if self.observes_loss:
            self._steps_without_loss = 0 if observed else self._steps_without_loss + 1
        self._step_losses = []
        if self._pending:
            self._adopt_pending()
        due = []
        for group, (_, effective, _) in zip(groups, scheduled):
            if isinstance(effective, Tensor) or effective != 0.0:
                group[STEPS] += 1
                group[WINDOW_STEPS] += 1
                group[WINDOW_LR_SUM] += effective
                if group[WINDOW_STEPS] >= self._window_length(group):
                    due.append(group)
        if due:
            self._meta_step(due)
        return loss

    def _window_length(self, group: dict[str, Any]) -> int:
        # A rule may lengthen a group's windows (RobustRule: past the inner optimizer's momentum memory).
        length = getattr(self.rule, "window_length", None)
        return self.update_every if length is None else length(self.update_every, group)

    def _use_foreach(self, params: list[Tensor]) -> bool:
        if self.foreach is not None:
            return self.foreach
        return bool(params) and all(p.device.type not in ("cpu", "meta") for p in params)

    @torch.no_grad()
    def _meta_step(self, groups: list[dict[str, Any]]) -> None:
        # Partial sums per reduction key (which process groups hold the rest of a parameter's entries):
        # one key, hence one all_reduce, for a plain FSDP2 model; the empty key (no collective) otherwise.
        partial_sums: dict[distributed.ReductionKey, dict[int, Tensor]] = {}
        gathered = []
        for index, group in enumerate(groups):
            params, snapshots, prev_updates = [], [], []
            for param in group["params"]:
                param_state = self.state.get(param)
                if param_state and SNAPSHOT in param_state:
                    params.append(param)
                    snapshots.append(param_state[SNAPSHOT])
                    prev_updates.append(param_state[PREV_UPDATE])
            lr_mean = group[WINDOW_LR_SUM] / group[WINDOW_STEPS]
            if isinstance(lr_mean, Tensor):
                lr_mean = lr_mean.item()
            # The buffers stay DTensors in ``state``; the math runs on the local shards, in place.
            local_params = [distributed.local_tensor(t) for t in params]
            local_snapshots = [distributed.local_tensor(t) for t in snapshots]
            local_prev = [distributed.local_tensor(t) for t in prev_updates]
            foreach = self._use_foreach(local_params)
            for key, members in distributed.group_by_key(params, self.process_group).items():
                partial_sums.setdefault(key, {})[index] = window_inner_products(
                    [local_params[i] for i in members],
                    [local_snapshots[i] for i in members],
                    [local_prev[i] for i in members],
                    lr_mean,
                    foreach=foreach,
                )
            gathered.append((local_params, local_snapshots, local_prev, lr_mean, foreach))
        inner_products = distributed.reduce_partial_sums(partial_sums, len(groups))
        if self.observes_loss:
            # The window loss sums ride in the same transfer as a, b and c.
            inner_products = torch.cat([inner_products, self._window_loss_sums(groups, inner_products)], 1)
        values = inner_products.tolist()  # the one host sync of the meta-step

        for group, gathered_group, (a, b, c, *loss_sums) in zip(groups, gathered, values):
            local_params, local_snapshots, local_prev, lr_mean, foreach = gathered_group
            loss_now, loss_prev = self._window_losses(group, *loss_sums)
            stats = WindowStats(
                a=a,
                b=b,
                c=c,
                lr=self._effective_lr(group),
                window=group[META_STEPS],
                steps=group[WINDOW_STEPS],
                loss=loss_now,
                prev_loss=loss_prev,
                momentum=first_moment(group),
            )
            decision = self.rule.decide(stats, group[RULE_STATE])
            if self.loss_guard and not decision.rollback:
                decision = guarded_factor(
                    decision,
                    loss_now,
                    loss_prev,
                    gamma=self.gamma if self.gamma is not None else 0.33,
                    tolerance=self.loss_guard_tolerance,
                    z=self.loss_guard_z,
                )
            if decision.rollback:
                # Back to the window's start: u_old and the snapshot stay, and so does the loss the next
                # window is compared with.
                rollback_window_(local_params, local_snapshots, foreach=foreach)
                reset_inner_momentum_([self.state[p] for p in group["params"] if p in self.state])
            else:
                # The just-closed direction becomes u_old, and the snapshot restarts at the current
                # weights. Copied, not swapped: the buffers keep their identity in ``state``, which a
                # torch.compile'd inner step guards on.
                advance_window_(local_params, local_snapshots, local_prev, lr_mean, foreach=foreach)
                if self.observes_loss:
                    group[PREV_LOSS] = (
                        None
                        if loss_now is None
                        else [
                            loss_now.mean,
                            loss_now.variance,
                            loss_now.first,
                            loss_now.mssd_variance,
                            loss_now.trend,
                            loss_now.trend_variance,
                        ]
                    )
            if decision.status == Status.NONFINITE or (decision.rollback and not math.isfinite(a + b + c)):
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
            if not decision.rollback and decision.factor != 1.0 and self._schedule_holds(group, decision):
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
            group[FACTOR] *= decision.factor
            group[META_STEPS] += 1
            window_steps = group[WINDOW_STEPS]
            group[WINDOW_STEPS] = 0
            group[WINDOW_LR_SUM] = 0.0
            self.history.append(
                MetaStepRecord(
                    step=group[STEPS],
                    group=self._group_index(group),
                    a=a,
                    b=b,
                    factor=decision.factor,
                    lr=self._effective_lr(group),
                    status=decision.status,
                    c=c,
                    window_steps=window_steps,
                )
            )

    def _schedule_holds(self, group: dict[str, Any], decision: MetaStepDecision) -> bool:
        """Whether a schedule overrules the rule's factor: during ``total_steps``' decay the factor holds
        (only rollbacks act: the decay is the schedule); below the user's schedule's peak rate it may not
        climb, since a climb would read the scheduled cut as "too small a rate" and undo it. A tensor lr
        is not read (that would sync)."""
        if not getattr(self.rule, "holds_under_schedules", False):
            return False  # the paper's rule stays Eq. 8 exactly, whatever the schedule
        ramp = self._ramp(group)
        if ramp < 1.0:
            return True
        lr = group["lr"]
        if decision.factor < 1.0 or isinstance(lr, Tensor):
            return False
        return bool(lr * ramp < group[SCHEDULE_PEAK] * (1.0 - 1e-9))

    def _effective_lr(self, group: dict[str, Any]) -> float:
        """The rate the group's next step takes: its lr × the trained factor × the decay's ramp."""
        factor: float = group[FACTOR]
        return float(group["lr"]) * factor * self._ramp(group)

    def _ramp(self, group: dict[str, Any]) -> float:
        """The budget-aware decay's multiplier for the group's next step (1 without ``total_steps``)."""
        return anneal_multiplier(group[STEPS], self.total_steps, self.anneal_steps)

    def _warn_once(self, key: str, message: str, stacklevel: int = 4) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)

    def _window_loss_sums(self, groups: list[dict[str, Any]], like: Tensor) -> Tensor:
        """The ``[groups, 6]`` window loss sums (see ``_observe_loss``), as ``like``."""
        zeros = torch.zeros(_LOSS_SUMS, dtype=like.dtype, device=like.device)
        return torch.stack(
            [
                zeros if group[LOSS_SUM] is None else group[LOSS_SUM].to(device=like.device, dtype=like.dtype)
                for group in groups
            ]
        )

    def _window_losses(
        self, group: dict[str, Any], *loss_sums: float
    ) -> tuple[WindowLoss | None, WindowLoss | None]:
        """This window's loss and the previous one's, and turn the group's loss window over."""
        if not self.observes_loss:
            return None, None
        total, total_sq, first, _, sq_diff, index_weighted = loss_sums
        loss_now = WindowLoss.from_sums(total, total_sq, group[LOSS_COUNT], first, sq_diff, index_weighted)
        if group.get("maximize", False):
            # The inner optimizer climbs this objective: the rule and the guard read it as a loss to
            # minimise. Stored so, the previous window's loss needs no flip.
            loss_now = negated(loss_now)
        prev = group[PREV_LOSS]
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
                stacklevel=6,
            )
        group[LOSS_COUNT] = 0
        if group[LOSS_SUM] is not None:
            group[LOSS_SUM].zero_()  # in place: the tensor keeps its identity (and device)
        return loss_now, None if prev is None else WindowLoss(*prev)

    def _observe_loss(self, loss: object, what: str) -> None:
        if isinstance(loss, Tensor):
            if loss.numel() != 1:
                raise ValueError(f"{what} must be a one-element tensor, got shape {tuple(loss.shape)}")
            device = loss.device
            value = loss.detach().reshape(()).to(_sum_dtype(device))
        elif _is_real(loss):
            device = torch.device("cpu")
            value = torch.tensor(float(loss), dtype=_sum_dtype(device))
        else:
            raise TypeError(f"{what} must be a Tensor or a real number, got {type(loss).__name__}")
        zero = torch.zeros_like(value)
        # The window sums [Σ loss, Σ loss², first loss, last loss, Σ (loss - previous loss)², Σ i·loss]
        # (i: the loss's 0-based index in the window), added to on the loss's device (no host sync): a
        # window's first loss fills the first and last entries.
        first = torch.stack([value, value * value, value, value, zero, zero])
        sums, adds = [], []
        for group in self.param_groups:
            total = group.get(LOSS_SUM)
            if total is None or total.device != device or total.numel() != _LOSS_SUMS:
                # First loss (or a loss on a new device, e.g. after loading a CPU state dict): the sums
                # live where the losses are, so adding never moves data between devices.
                start = torch.zeros(_LOSS_SUMS) if total is None or total.numel() != _LOSS_SUMS else total
                total = group[LOSS_SUM] = start.to(device=device, dtype=value.dtype)
            count = group.get(LOSS_COUNT, 0)
            sums.append(total)
            if count == 0:
                adds.append(first)
            else:
                step = value - total[3]
                adds.append(torch.stack([value, value * value, zero, step, step * step, count * value]))
            group[LOSS_COUNT] = count + 1
        torch._foreach_add_(sums, adds)

    def _set_group_defaults(self, group: dict[str, Any]) -> None:
        for key, value in _GROUP_DEFAULTS.items():
            group.setdefault(key, value)
        if RULE_STATE not in group:
            group[RULE_STATE] = fresh_rule_state(self.rule)  # a fresh state per group
        if self.observes_loss:
            for key, value in _LOSS_DEFAULTS.items():
                group.setdefault(key, value)

    def _group_index(self, group: dict[str, Any]) -> int:
        for i, candidate in enumerate(self.param_groups):
            if candidate is group:
                return i
        raise RuntimeError("param group vanished during the meta-step")

    # -- lazy snapshots --------------------------------------------------------------------------------
    def _refresh_pending(self, groups: list[dict[str, Any]]) -> None:
        # FSDP/ZeRO may swap group["params"] after construction, and users may add groups straight to
        # the inner optimizer: rebuild the pending list whenever the params lists are not the ones seen.
        if (
            self._pending is not None
            and len(groups) == len(self._seen_params)
            and all(group["params"] is seen for group, seen in zip(groups, self._seen_params))
        ):
            return
        for group in groups:
            self._set_group_defaults(group)
        self._seen_params = [group["params"] for group in groups]
        state = self.state
        self._pending = [p for group in groups for p in group["params"] if SNAPSHOT not in state.get(p, ())]
        live = {id(p) for p in self._pending}
        self._pending_snapshots = {p: s for p, s in self._pending_snapshots.items() if id(p) in live}

    @torch.no_grad()
    def _snapshot_pending(self) -> None:
        assert self._pending is not None  # step() calls it after _refresh_pending
        for param in self._pending:
            # Caught here, before the inner step applies a sparse update TLR cannot follow; grads that
            # a closure computes are caught after the step, in _adopt_pending.
            _check_dense_grad(param)
            if param not in self._pending_snapshots:
                self._pending_snapshots[param] = param.detach().clone()

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
            _check_dense_grad(param)
            param_state = self.state[param]
            param_state[SNAPSHOT] = self._pending_snapshots.pop(param)
            param_state[PREV_UPDATE] = torch.zeros_like(param, memory_format=torch.preserve_format)
        self._pending = still_pending


def _same_loss(new: Tensor | float, seen: Tensor | float) -> bool:
    """Whether ``new`` is a loss already observed (``seen``): the same number, or a tensor on the same
    memory (the tensor itself, or a view of it such as ``loss.detach()``); comparing values would sync."""
    if isinstance(new, Tensor) and isinstance(seen, Tensor):
        try:
            return new.device == seen.device and new.data_ptr() == seen.data_ptr()
        except (RuntimeError, NotImplementedError):  # tensor subclasses without storage
            return new is seen
    return not isinstance(new, Tensor) and not isinstance(seen, Tensor) and float(new) == seen


def _check_dense_grad(param: Tensor) -> None:
    if param.grad is not None and param.grad.is_sparse:
        raise ValueError(
            "TLR does not support sparse gradients (a parameter of optimizer.param_groups has "
            "a sparse grad); use a dense-gradient optimizer"
        )


# -- torch's global step hooks ---------------------------------------------------------------------------
# torch.optim.register_optimizer_step_{pre,post}_hook hooks are kept in two module-level dicts that the
# wrapper of every Optimizer subclass's step reads. TLR.step has that wrapper, and so has the inner step it
# calls, so each global hook would fire twice per TLR step. The inner step is still called as
# ``self.optimizer.step``, not as its class's unwrapped function (``type(inner).step.__wrapped__``): that
# would skip what is attached to the inner instance (its own step hooks, a torch.compile'd
# ``inner.step``, an LR scheduler's step counter on the inner optimizer). Instead, for the duration of the
# inner call, each global hook is replaced in place by one that does nothing for that inner optimizer and
# forwards any other: the dicts keep their identity, so hooks registered or removed meanwhile land in the
# real dicts, and another optimizer stepped meanwhile (by a hook, or in another thread) still fires them.
_GLOBAL_HOOKS_LOCK = threading.Lock()


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
