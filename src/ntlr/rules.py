"""Rate rules: what a meta-step does with a window's statistics.

:class:`ntlr.TLR` owns the windows (snapshots, displacements, the one host sync per meta-step, rollback
of the weights); a *rule* owns the decision. Every K counted steps, for each param group, TLR hands the
rule a :class:`WindowStats` and applies the :class:`Decision` it returns. Rules are plain objects (pass one
to ``TLR(rule=...)``) or registered names (``"paper"``, ``"robust"``): the hypergradient baselines of the
paper's Table 1 are rules too (:mod:`ntlr_bench.optimizers.hypergrad_window`).

A rule may keep a few floats per group in ``state`` (a dict TLR stores in the param group under
``tlr_rule_state``, so ``state_dict`` round-trips it); the paper's rule keeps none, the robust one a few.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from .functional import MetaStepDecision, Status, WindowLoss, newton_factor

__all__ = [
    "RULES",
    "Decision",
    "PaperRule",
    "RobustRule",
    "Rule",
    "RuleState",
    "WindowStats",
    "first_moment",
    "make_rule",
    "momentum_horizon",
    "noise_alignment",
]

Decision = MetaStepDecision
RuleState = MutableMapping[str, float]


@dataclass(frozen=True)
class WindowStats:
    """What a rule sees at the end of one window of one param group.

    ``a = <u_old, u_new>``, ``b = <u_old, u_old>`` and ``c = <u_new, u_new>`` are the inner products of the
    last two window directions (a direction is the window's displacement over its mean rate; ``a = b = 0``
    in the first window, where there is no ``u_old``). ``lr`` is the group's effective rate now, ``window``
    the index of this meta-step in the group (0 for the first window), ``steps`` the window length K.
    ``loss`` is this window's training loss (``None`` unless the rule or the loss guard asked TLR to
    observe losses and some were observed); ``prev_loss`` the last window's that the weights continue from
    (after a rollback, the window before the rolled-back one). ``momentum`` is the inner optimizer's
    first-moment coefficient β in this group (:func:`first_moment`; 0 without one).
    """

    a: float
    b: float
    c: float
    lr: float
    window: int
    steps: int
    loss: WindowLoss | None = None
    prev_loss: WindowLoss | None = None
    momentum: float = 0.0

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.a, self.b, self.c))


@runtime_checkable
class Rule(Protocol):
    """A learning-rate rule TLR calls once per window and param group.

    ``uses_loss``: whether the rule reads :attr:`WindowStats.loss` (TLR then observes the losses of
    ``step(closure)`` and :meth:`ntlr.TLR.observe_loss`).

    A rule may also define ``window_length(update_every, group) -> int``: the number of counted steps
    of a group's window (TLR's K when absent).
    """

    # Read-only for TLR: a frozen dataclass's fields satisfy them.
    @property
    def name(self) -> str: ...

    @property
    def uses_loss(self) -> bool: ...

    def decide(self, stats: WindowStats, state: RuleState) -> Decision: ...


def first_moment(group: Mapping[str, Any]) -> float:
    """A param group's first-moment coefficient β: ``momentum`` of SGD/RMSprop, ``betas[0]`` of the Adam
    family; 0 without one (or outside (0, 1))."""
    beta = group.get("momentum")
    if beta is None and isinstance(group.get("betas"), (tuple, list)) and group["betas"]:
        beta = group["betas"][0]
    if isinstance(beta, Tensor):
        beta = float(beta)
    if not isinstance(beta, (int, float)) or not 0.0 < beta < 1.0:
        return 0.0
    return float(beta)


def momentum_horizon(group: Mapping[str, Any]) -> int:
    """How many steps a param group's inner optimizer remembers: ``ceil(1 / (1 - β))`` for its first
    moment β (:func:`first_moment`), 1 without one."""
    beta = first_moment(group)
    return math.ceil(1.0 / (1.0 - beta) - 1e-9) if beta > 0.0 else 1


def noise_alignment(beta: float, steps: int) -> float:
    """``a / b`` of two consecutive windows of ``steps`` steps when the gradients are pure white noise and
    the inner optimizer sums them into a momentum ``m_t = β m_{t-1} + g_t`` (its stationary state):
    the windows share the momentum carried across their border, so they look aligned (0.52 at β = 0.9,
    K = 10) although the landscape says nothing. 0 without momentum, where the paper's K-step
    approximation reads ``a`` as it is."""
    if not 0.0 < beta < 1.0 or steps < 1:
        return 0.0
    k = steps
    carried = (1.0 - beta**k) / (1.0 - beta)  # weight of a gradient from before a window on its sum
    geometric2 = beta**2 * (1.0 - beta ** (2 * k)) / (1.0 - beta**2)
    cov = carried**2 * beta**k * beta**2 / (1.0 - beta**2) + carried / (1.0 - beta) * (
        beta * (1.0 - beta**k) / (1.0 - beta) - geometric2
    )
    own = k - 2.0 * beta * (1.0 - beta**k) / (1.0 - beta) + geometric2
    var = carried**2 * beta**2 / (1.0 - beta**2) + own / (1.0 - beta) ** 2
    return cov / var


def _check_unit(name: str, value: float, *, low: float, high: float, closed_low: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        ok = (low <= value if closed_low else low < value) and value <= high
    if not ok:
        bracket = "[" if closed_low else "("
        raise ValueError(f"{name} must be a real number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def check_max_factor(name: str, value: object) -> float:
    """A per-window factor bound: a real number >= 1 (∞ allowed: no bound)."""
    if not (isinstance(value, int | float) and not isinstance(value, bool) and value >= 1.0):
        raise ValueError(f"{name} must be a real number >= 1, got {value!r}")
    return float(value)


def _lower_ceiling(state: RuleState, rate: float) -> None:
    """A ceiling on the rate's later climbs only ever comes down."""
    state["ceiling"] = min(state.get("ceiling", math.inf), rate)


@dataclass(frozen=True)
class PaperRule:
    r"""The paper's rule (Eq. 8 with the K-step approximation), exactly.

    ``factor = min(1 + γ a / (b - a), max_factor)`` when ``b - a > 0``; otherwise, in the first window and
    on non-finite inner products the rate is kept. Checked against the float64 reference in
    ``tests/reference.py``.
    """

    gamma: float = 0.33
    max_factor: float = 100.0
    name: str = "paper"
    uses_loss: bool = False

    def __post_init__(self) -> None:
        _check_unit("gamma", self.gamma, low=0.0, high=1.0)
        check_max_factor("max_factor", self.max_factor)

    def decide(self, stats: WindowStats, state: RuleState) -> Decision:
        return newton_factor(
            stats.a, stats.b, gamma=self.gamma, max_factor=self.max_factor, first_window=stats.window == 0
        )


@dataclass(frozen=True)
class RobustRule:
    r"""The paper's Newton step made safe to use untuned (beyond the paper).

    Changes to :class:`PaperRule`, each for a failure measured on the gauntlet (``ntlr-bench sweep
    gauntlet``; docs/rules.md has the numbers):

    1. **Rollback.** A window is undone when its inner products or mean loss are not finite, when its
       mean loss jumped above the previous window's (by more than ``rollback_rise``, relative, and by
       more than ``z`` standard errors of the previous window's noise, since a diverging window's own
       jumps must not excuse it), or when its loss climbed through the window (a least-squares slope
       ``z`` standard errors above 0 that adds up to more than ``rollback_rise`` of the mean). The noise
       is estimated from successive differences, so a climb is not mistaken for noise. In the first
       window the reference is the first loss, and only a rise by half counts. Undoing means TLR restores
       the weights the window started from (the snapshot it holds anyway), clears the inner optimizer's
       first moments, and multiplies the rate by ``rollback_factor``: no divergence outlives its window.
       After ``max_rollbacks`` rollbacks in a row on finite losses the window is kept and the rate only
       lowered by ``1 - γ`` (the rise is then not the rate's doing: a shift in the data, a schedule), so
       a rising loss cannot freeze training.
    2. **Trust the Newton step downwards.** When the step lowers the rate (``a < 0``) it is taken
       undamped, ``factor = b / (b - a)``, the secant estimate of the line minimiser itself: the paper's
       damped step shrinks the rate by at most ``1 - γ`` a window, too slow to leave a divergent rate.
       Floored at ``1 / max_factor``.
    3. **No increase on a rising loss.** A window whose mean loss rose beyond noise does not raise the
       rate, whatever the displacements say: aligned windows with a rising loss are weight decay or
       momentum drifting, not a valley to accelerate along.
    4. **The loss decides where Newton cannot.** ``b - a <= 0`` (the loss looks concave along the
       windows, or a period-two oscillation shows through an even window length): a rising loss lowers
       the rate by ``1 - γ``; windows alike in length (``c <= 2b``) with the loss not rising mean steps
       too small to change the gradient, and the rate climbs by ``max_factor``; otherwise by ``1 + γ``.
    5. **Windows past the momentum's memory.** A window lasts at least ``momentum_windows`` times the
       inner optimizer's momentum horizon ``ceil(1 / (1 - β))`` steps (:func:`momentum_horizon`):
       shorter windows share most of their momentum, so they look aligned whatever the landscape.
       With ``odd_windows=True`` the length is made odd: gradient descent's classic instability (a step
       past twice the inverse curvature) flips the displacement's sign every step, which an even window
       sums away (consecutive windows then look aligned, ``b - a <= 0``) and an odd one shows as
       ``a < 0``, a step down. Off by default: on ``benchmarks/rule_stress.py`` it turned 40 wrong-way
       runs of 2304 into 34, but on the gauntlet's quick tier it diverged or stalled in two cells where
       the even windows did not (seed 0; both fine on seeds 1 and 2), too little evidence either way to
       change the default's windows.
    6. **Climb fast once, then carefully.** Until the rule first lowers the rate, one window may raise it
       by ``max_factor`` (the paper's ×100, so α0 = 1e-6 reaches 1e-2 in two windows); after that, by
       at most ``settled_max_factor``.
    7. **A blow-up sets a ceiling.** The directions are displacements over the rate, so at a stable rate
       they shrink or hold as training proceeds; ``c > blowup_ratio * b`` (the direction's norm grew
       ``sqrt(blowup_ratio)``-fold in one window), or as much over a streak of aligned growing windows
       (``c > b``, ``a >= b``: how an even window shows a period-two divergence), is an unstable
       direction taking over: per step it grew ``ρ = (c / b) ** (1 / (2 K))`` (over the streak: its
       product, over its steps), which for gradient descent along a curvature ``h`` is
       ``α h - 1``, so ``α h = 1 + ρ`` and the stable rates are those below ``2 α / (1 + ρ)``. The window
       is rolled back with the rate cut to ``α / (1 + ρ)`` and the rate may not climb past 90 % of
       ``2 α / (1 + ρ)`` again (nor past half a rate whose window went non-finite): the Newton step sees
       the directions that dominate the displacement, not the stiff one it destabilises, and would climb
       back into the blow-up every few windows. Without an observed loss the blow-up alone decides;
       with one, only where the window's loss did not fall, since a growing direction under a falling
       loss is progress (leaving a plateau), not instability. Nor right after the rate was lowered: a
       window that starts where the last one blew up has that place's large gradients at any rate.

    8. **Without a loss, momentum's own alignment is not read as a signal.** Consecutive windows of a
       momentum optimizer share the momentum carried across their border, so under pure noise their
       ``a / b`` is ``ρ0 = noise_alignment(β, K)`` (0.52 for β = 0.9 and K = 10), and the Newton step
       reads that as "too small a rate" and climbs for ever (the loss vetoes it when observed). Without
       an observed loss the step reads ``(a - ρ0 b) / (1 - ρ0)`` instead (``noise_correction``).

    The loss comes from ``step(closure)`` or :meth:`ntlr.TLR.observe_loss`; without it, 1 acts on
    non-finite inner products and blow-ups (7) only, 3 and the loss branches of 4 are off, and the rule
    reads the weights alone.
    """

    gamma: float = 0.33
    max_factor: float = 100.0
    rollback_factor: float = 0.3
    rollback_rise: float = 0.1
    z: float = 3.0
    max_rollbacks: int = 3
    momentum_windows: int = 1
    settled_max_factor: float = 2.0
    blowup_ratio: float = 16.0
    odd_windows: bool = False
    noise_correction: bool = True
    name: str = "robust"
    uses_loss: bool = True

    def __post_init__(self) -> None:
        _check_unit("gamma", self.gamma, low=0.0, high=1.0)
        check_max_factor("max_factor", self.max_factor)
        _check_unit("rollback_factor", self.rollback_factor, low=0.0, high=1.0)
        if not (isinstance(self.rollback_rise, int | float) and 0.0 <= self.rollback_rise < math.inf):
            raise ValueError(f"rollback_rise must be a finite real number >= 0, got {self.rollback_rise!r}")
        if not (isinstance(self.z, int | float) and 0.0 <= self.z < math.inf):
            raise ValueError(f"z must be a finite real number >= 0, got {self.z!r}")
        check_max_factor("settled_max_factor", self.settled_max_factor)
        if not (isinstance(self.blowup_ratio, int | float) and self.blowup_ratio > 1.0):
            raise ValueError(f"blowup_ratio must be a real number > 1 (inf: off), got {self.blowup_ratio!r}")
        for flag in ("odd_windows", "noise_correction"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        for name in ("max_rollbacks", "momentum_windows"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")

    def _reference(self, stats: WindowStats) -> float | None:
        if stats.prev_loss is not None and math.isfinite(stats.prev_loss.mean):
            return stats.prev_loss.mean
        if stats.loss is not None and math.isfinite(stats.loss.first):
            return stats.loss.first
        return None

    def window_length(self, update_every: int, group: Mapping[str, Any]) -> int:
        length = max(update_every, self.momentum_windows * momentum_horizon(group))
        return length + 1 if self.odd_windows and length % 2 == 0 else length

    def decide(self, stats: WindowStats, state: RuleState) -> Decision:
        decision = self._decide(stats, state)
        if decision.factor < 1.0:
            state["settled"] = 1.0
        growth = self.settled_max_factor if state.get("settled") else self.max_factor
        if decision.factor > growth:
            decision = Decision(growth, Status.CAPPED)
        ceiling = state.get("ceiling", math.inf)
        if decision.factor > 1.0 and stats.lr > 0.0 and stats.lr * decision.factor > ceiling:
            # Never a cut for the ceiling's sake (a schedule may have raised the rate past it).
            decision = Decision(max(ceiling / stats.lr, 1.0), Status.CAPPED)
        state["last_factor"] = decision.factor
        return decision

    def _blowup(self, stats: WindowStats, state: RuleState) -> float | None:
        """The per-step growth ``ρ`` of a direction that blew up by this window (7), else ``None``.

        One window whose direction grew ``blowup_ratio``-fold in squared norm, or a streak of aligned,
        growing windows (``c > b`` and ``a >= b``) that did so together: an even window sums gradient
        descent's period-two divergence into aligned windows that each grow only a little.
        """
        ratio = stats.c / stats.b if stats.window > 0 and stats.b > 0.0 and stats.c > 0.0 else 0.0
        aligned_growth = ratio > 1.0 and stats.a >= stats.b
        growth = math.log(ratio) if ratio > 1.0 else 0.0
        steps = float(max(stats.steps, 1))
        if aligned_growth:
            growth += state.get("growth", 0.0)
            steps += state.get("growth_steps", 0.0)
        state["growth"], state["growth_steps"] = (growth, steps) if aligned_growth else (0.0, 0.0)
        if growth <= math.log(self.blowup_ratio):
            return None
        state["growth"] = state["growth_steps"] = 0.0
        if state.get("last_factor", 1.0) < 1.0:
            # The rate was just lowered (or the window rolled back): a window that starts where the
            # last one blew up has the large gradients of that place, whatever its own rate.
            return None
        return math.exp(growth / (2.0 * steps))

    def _after_blowup(self, stats: WindowStats, state: RuleState, growth: float) -> float:
        """The rate factor after a blow-up with per-step growth ``growth``; lowers the ceiling."""
        _lower_ceiling(state, 0.9 * 2.0 * stats.lr / (1.0 + growth))  # 90 % of the stability limit
        return max(1.0 / (1.0 + growth), 1.0 / self.max_factor)

    def _decide(self, stats: WindowStats, state: RuleState) -> Decision:
        if stats.b == 0.0 and stats.c == 0.0:
            # The group's weights moved in neither window (no parameters, or none with a gradient): the
            # loss, shared by all groups, says nothing about its rate, and there is nothing to roll back.
            return Decision(1.0, Status.FIRST_WINDOW if stats.window == 0 else Status.NONPOSITIVE_DENOMINATOR)
        loss = stats.loss
        if not stats.finite or (loss is not None and not math.isfinite(loss.mean)):
            # Nothing to continue from: always undone, and never counted towards max_rollbacks.
            if stats.lr > 0.0:
                _lower_ceiling(state, 0.5 * stats.lr)
            return Decision(self.rollback_factor, Status.ROLLBACK, rollback=True)
        blowup = self._blowup(stats, state)
        rose = False
        reference = self._reference(stats)
        if loss is not None and reference is not None:
            rise = loss.mean - reference
            prev = stats.prev_loss
            if prev is not None:
                # Noise from successive differences (a loss climbing within a window is not noise), the
                # previous window's for the jump test: a diverging window's own jumps must not excuse it.
                own = loss.mssd_variance + prev.mssd_variance
                healthy = 2.0 * prev.mssd_variance
                if not math.isfinite(own):
                    # One loss a window (K = 1): no within-window spread; use the spread of the window
                    # means' changes so far (an overestimate: it includes the progress).
                    own = healthy = state.get("change_sq", 0.0)
                change_sq = rise * rise
                state["change_sq"] = 0.8 * state.get("change_sq", change_sq) + 0.2 * change_sq
                jumped = rise > self.rollback_rise * abs(reference) and rise > self.z * math.sqrt(healthy)
                rose = rise > self.z * math.sqrt(own)
            else:
                # First window, against the first loss: one loss has no noise estimate of its own; only
                # a rise by half counts (the trend test below catches a climb). A healthy first window
                # ends below where it started.
                jumped = rise > 0.5 * abs(reference)
                rose = False
            # The loss climbed through the window: a least-squares slope that is significant and adds up
            # to more than rollback_rise of the mean over the window (a divergence starting mid-window,
            # which the window mean alone hides behind the steps before it).
            climbed = loss.trend > self.z * math.sqrt(loss.trend_variance) and loss.trend * (
                stats.steps - 1
            ) > self.rollback_rise * abs(loss.mean)
            # A blow-up (7) under a loss that did not fall: the loss a window sees lags its steps (each
            # is taken before its step), so the damage of a window's last steps shows in the weights first.
            if jumped or climbed or (blowup is not None and rise > 0.0):
                factor = self.rollback_factor
                if blowup is not None:
                    factor = min(factor, self._after_blowup(stats, state, blowup))
                if state.get("rollbacks", 0.0) < self.max_rollbacks:
                    state["rollbacks"] = state.get("rollbacks", 0.0) + 1.0
                    return Decision(factor, Status.ROLLBACK, rollback=True)
                state["rollbacks"] = 0.0
                return Decision(1.0 - self.gamma, Status.LOSS_GUARD)
        elif blowup is not None:
            # No loss to consult: the weights alone say the window diverged.
            factor = self._after_blowup(stats, state, blowup)
            if state.get("rollbacks", 0.0) < self.max_rollbacks:
                state["rollbacks"] = state.get("rollbacks", 0.0) + 1.0
                return Decision(factor, Status.ROLLBACK, rollback=True)
            state["rollbacks"] = 0.0
            return Decision(factor, Status.UPDATED)
        state["rollbacks"] = 0.0
        if stats.window == 0 or stats.b == 0.0:
            # No u_old yet: the first window, or every window so far was rolled back (u_old is still
            # the zeros it started as).
            return Decision(1.0, Status.FIRST_WINDOW)
        a, b = stats.a, stats.b
        if loss is None and self.noise_correction:
            # No loss to veto a climb: read a against what momentum alone would give (8).
            rho = noise_alignment(stats.momentum, stats.steps)
            a = (a - rho * b) / (1.0 - rho)
        denominator = b - a
        if not denominator > 0.0:
            # No Newton step (the loss looks concave along the windows, or a period-two oscillation
            # through an even K): the loss tells which.
            if rose:
                return Decision(1.0 - self.gamma, Status.LOSS_GUARD)
            if loss is not None and stats.c <= 2.0 * b:
                # Aligned windows of a steady length, the loss not rising: the weights moved too little
                # for the gradient to change; the rate is far too small.
                return Decision(self.max_factor, Status.CAPPED)
            if loss is not None:
                return Decision(1.0 + self.gamma, Status.NONPOSITIVE_DENOMINATOR)
            return Decision(1.0, Status.NONPOSITIVE_DENOMINATOR)
        if a < 0.0:
            factor = max(b / denominator, 1.0 / self.max_factor)
            return Decision(factor, Status.UPDATED)
        if rose:
            return Decision(1.0, Status.LOSS_GUARD)
        factor = 1.0 + self.gamma * a / denominator
        if not math.isfinite(factor) or factor > self.max_factor:
            return Decision(self.max_factor, Status.CAPPED)
        return Decision(factor, Status.UPDATED)


RULES: dict[str, Callable[..., Rule]] = {"paper": PaperRule, "robust": RobustRule}


def make_rule(rule: str | Rule, **options: float) -> Rule:
    """A rule object from a registered name (``options`` go to its constructor) or the object itself."""
    if isinstance(rule, str):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)} or a Rule object, got {rule!r}")
        return RULES[rule](**options)
    if not isinstance(rule, Rule):
        raise TypeError(
            f"rule must be a rule name or an object with name, uses_loss and decide(stats, state), "
            f"got {type(rule).__name__}"
        )
    if options:
        raise ValueError(
            f"{', '.join(sorted(options))} configure a named rule; set them on the rule object instead"
        )
    return rule
