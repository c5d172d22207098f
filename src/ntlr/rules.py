"""Rate rules: what a meta-step does with a window's statistics.

:class:`ntlr.TLR` owns the windows (snapshots, displacements, the one host sync per meta-step, rollback
of the weights); a *rule* owns the decision. Every K counted steps, for each param group, TLR hands the
rule a :class:`WindowStats` and applies the :class:`Decision` it returns. Rules are plain objects (pass one
to ``TLR(rule=...)``) or registered names (``"paper"``, ``"robust"``): the hypergradient baselines of the
paper's Table 1 are rules too (:mod:`ntlr_bench.optimizers.hypergrad_window`).

A rule keeps its per-group memory in ``state``: the object its ``init()`` makes (a dataclass of plain
numbers and bools: :class:`RobustState` for the robust rule), or a dict of floats for a rule without
``init``. TLR stores it in the param group under ``tlr_rule_state`` and ``state_dict`` round-trips it as
``[field, value]`` pairs; the paper's rule keeps none.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor

from .functional import MetaStepDecision, Status, WindowLoss, newton_factor

__all__ = [
    "RULES",
    "Decision",
    "LossEvidence",
    "PaperRule",
    "RobustRule",
    "RobustState",
    "Rule",
    "RuleState",
    "WindowStats",
    "first_moment",
    "loss_unchanged",
    "make_rule",
    "momentum_horizon",
    "momentum_warmup",
    "noise_alignment",
]

Decision = MetaStepDecision
# What ``decide`` gets as ``state``: the rule's ``init()`` object, or a dict of floats for a rule without one.
RuleState = Any


@dataclass(frozen=True)
class WindowStats:
    """What a rule sees at the end of one window of one param group.

    ``a = <u_old, u_new>``, ``b = <u_old, u_old>`` and ``c = <u_new, u_new>`` are the inner products of the
    last two window directions (a direction is the window's displacement over its mean rate; ``a = b = 0``
    in the first window, where there is no ``u_old``). ``weights_sq = <w, w>`` of the group's weights at
    the window's start, where the rule's ``uses_weight_norm`` asked for it (NaN otherwise). ``lr`` is the
    group's effective rate now, ``window`` the index of this meta-step in the group (0 for the first
    window), ``steps`` the window length K. ``loss`` is this window's training loss (``None`` unless the
    rule or the loss guard asked TLR to observe losses and some were observed); ``prev_loss`` the last
    window's that the weights continue from (after a rollback, the window before the rolled-back one).
    ``momentum`` is the inner optimizer's first-moment coefficient β in this group (:func:`first_moment`;
    0 without one). ``annealed``: a schedule decays the rate to the end of a known budget
    (:class:`ntlr.TLR`'s ``total_steps``), so the rule need not anneal by itself. ``warmup``: how much
    longer (squared) a window's direction is than the last one's from the inner optimizer's momentum
    filling up alone, under a constant gradient, where the last one started from an empty buffer (the
    run's first window, or one after a rollback): :func:`momentum_warmup` for SGD-style momentum, 1 for
    the Adam family (bias-corrected: no ramp) and without momentum. ``stalled``: the group's weights did not
    move at all (``b = c = 0``) although it had finite, nonzero gradients small enough that no step of the
    window's rate along them registers in the weights (each entry's ``rate * min(|g|, 1)`` below its
    weight's float resolution, ``eps * |w|``): its steps are below that resolution (TLR sets it only then,
    for groups of whole, unsharded tensors; not where a larger step was possible and the inner optimizer
    took none, as L-BFGS at its tolerances). ``loss_unresolved``: every loss of the window equals the one it
    is compared with (:func:`loss_unchanged`) although the group's gradients are finite and not all zero:
    the window's steps changed the loss by less than its floating-point resolution (TLR sets it only then,
    for groups of whole, unsharded tensors).
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
    weights_sq: float = math.nan
    annealed: bool = False
    warmup: float = 1.0
    stalled: bool = False
    loss_unresolved: bool = False

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.a, self.b, self.c))


@runtime_checkable
class Rule(Protocol):
    """A learning-rate rule TLR calls once per window and param group.

    ``uses_loss``: whether the rule reads :attr:`WindowStats.loss` (TLR then observes the losses of
    ``step(closure)`` and :meth:`ntlr.TLR.observe_loss`).

    A rule may also define ``window_length(update_every, group) -> int``: the number of counted steps
    of a group's window (TLR's K when absent), ``init() -> state``: a param group's fresh state, a
    dataclass of plain numbers and bools (a dict of floats when absent), and ``uses_weight_norm``: true
    to be handed the weights' squared norm (:attr:`WindowStats.weights_sq`), or a callable
    ``uses_weight_norm(kept) -> bool`` asked at each window, ``kept`` telling whether the group has kept
    a window (NaN where it says no: the sum costs a read of the weights); a callable that takes a second
    argument is handed the group's rule state too. ``uses_stalled`` (true when absent): whether the rule
    reads :attr:`WindowStats.stalled` and :attr:`WindowStats.loss_unresolved`, for which TLR reads the
    gradients of a window that did not move or whose loss did not change. ``holds_under_schedules``:
    true for TLR to keep the factor during ``total_steps``' decay and to hold climbs while a user's
    schedule has the rate below its peak; such a rule may define ``searching(state) -> bool`` (true while
    it is still finding the rate's scale: it then steps down freely and climbs unless the schedule has cut
    more than half) and ``progressed(stats) -> bool`` (true where the window's loss fell beyond noise: a
    settled rule's climb then passes too, unless the schedule has cut more than half).
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


@functools.lru_cache(maxsize=64)
def momentum_warmup(beta: float, steps: int, *, dampening: float = 0.0, nesterov: bool = False) -> float:
    """``c / b`` of the first two windows of ``steps`` steps of SGD's momentum started from an empty buffer
    under a constant gradient: the buffer fills up over the first window, so the second is longer (3.7×
    in squared length at β = 0.9, K = 10; 1 without momentum). Aligned windows that grow by that much
    have not seen the gradient change: their rate is far too small, not unstable. Follows
    ``torch.optim.SGD``'s update (the first step's buffer is the gradient itself, ``dampening`` after)."""
    if not 0.0 < beta < 1.0 or steps < 1:
        return 1.0
    buf, sums = 0.0, [0.0, 0.0]
    for t in range(2 * steps):
        buf = 1.0 if t == 0 else beta * buf + (1.0 - dampening)
        sums[t // steps] += 1.0 + beta * buf if nesterov else buf
    return (sums[1] / sums[0]) ** 2 if sums[0] > 0.0 else 1.0


@functools.lru_cache(maxsize=64)
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
    # Eq. 8 reads neither WindowStats.stalled nor loss_unresolved: TLR skips their gradient reads.
    uses_stalled: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_unit("gamma", self.gamma, low=0.0, high=1.0)
        check_max_factor("max_factor", self.max_factor)

    def decide(self, stats: WindowStats, state: RuleState) -> Decision:
        return newton_factor(
            stats.a,
            stats.b,
            gamma=self.gamma,
            max_factor=self.max_factor,
            first_window=stats.window == 0,
            c=stats.c,
        )


@dataclass
class RobustState:
    """:class:`RobustRule`'s memory of one param group, made by :meth:`RobustRule.init`.

    ``state_dict`` writes it as ``[field, value]`` pairs (every field from construction on, as DCP needs)
    and ``load_state_dict`` reads them back field by field, older checkpoints' float-valued keys included.
    """

    settled: bool = False  # the rule lowered the rate once (not by a b = 0 rollback): climbs capped (6)
    rollbacks: int = 0  # windows rolled back in a row on finite losses
    ceiling: float = math.inf  # the rate never climbs past it (set by blow-ups and non-finite windows)
    growth: float = 0.0  # log squared-norm growth over the current streak of aligned, growing windows
    growth_steps: int = 0  # the steps of that streak
    last_factor: float = 1.0  # the factor of the last decision
    change_sq: float = math.nan  # running mean of squared window-mean changes (the noise at K = 1)
    alignment: float = math.nan  # running mean of the settled Newton log-steps (9); NaN: none yet
    spread: float = math.nan  # running mean of their squared deviations from that mean (9); NaN: none yet
    noise: float = math.nan  # running mean of kept windows' squared standard errors (mssd): the loss noise
    steady_windows: int = 0  # settled steady windows so far: the floor's mean is trusted after 1 / pool
    best: float = math.nan  # the lowest window mean loss so far (10); NaN: none yet
    stale: int = 0  # windows since the last new lowest mean, or since the last plateau cut (10)
    norm_ref: float = math.nan  # c of the first kept window once settled (12); NaN: none yet
    norm_scale: float = 1.0  # the sinking floor's multiplier applied so far, (norm_ref / c) ** e (12)
    level: float = math.nan  # running mean of the settled window means over ~1 / pool windows (13)
    low_level: float = math.nan  # its lowest value since settling or the last creep cut (13)
    settled_rate: float = math.nan  # the rate the search settled at (14); NaN: not settled yet
    rate: float = math.nan  # the rate the last decision left (14): whether the next window needs <w, w>
    first_loss: float = math.nan  # the first window's mean loss (16); NaN: none yet
    lowest: float = math.nan  # the lowest finite window mean loss so far (16); NaN: none yet
    # The open window started from empty first moments (the first, or one after a rollback); the last kept
    # one did (its successor is longer by their ramp: 4). init() starts a run fresh.
    fresh_start: bool = False
    old_fresh: bool = False
    debt: float = 0.0  # log of a settled rollback's cut still to give back (15)
    debt_step: float = 0.0  # the log-factor given back a window (15)

    def lower_ceiling(self, rate: float) -> None:
        """A ceiling on the rate's later climbs only ever comes down."""
        self.ceiling = min(self.ceiling, rate)

    def __eq__(self, other: object) -> bool:
        # NaN marks "none yet": two states that both have none are equal (a restored checkpoint is).
        if not isinstance(other, RobustState):
            return NotImplemented
        return all(
            _same(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(RobustState)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq


@dataclass(frozen=True)
class LossEvidence:
    """What a window's losses say, against the window the weights continue from (:class:`RobustRule`)."""

    rise: float  # this window's mean loss minus the reference (the previous window's, or the first loss)
    jumped: bool  # rose by more than rollback_rise, relative, and z standard errors of the previous noise
    rose: bool  # rose by more than z standard errors of both windows' noise
    climbed: bool  # a significant least-squares slope through the window adding up to rollback_rise
    steady: bool = False  # within z standard errors of the previous window (K >= 2): a noise floor
    fell: bool = False  # fell by more than rollback_z standard errors of its noise (below 0 without one)
    sank: bool = False  # ended below its reference, down a significant slope adding up to rollback_rise


@dataclass(frozen=True, repr=False)
class RobustRule:
    r"""The paper's Newton step made safe to use untuned, over whole training runs (beyond the paper).

    Each safeguard below is one method that returns a decision or nothing; :meth:`decide` takes the first
    that fires (in this order) and then applies the caps (6, 7). Each answers a failure measured on the
    gauntlet (``ntlr-bench sweep gauntlet``; docs/rules.md has the numbers):

    1. **Rollback** (:meth:`nonfinite`, :meth:`diverged`). A window is undone when its inner products or
       mean loss are not finite, when its mean loss *jumped* above the previous window's (by more than
       ``rollback_rise``, relative, and by more than ``rollback_z`` standard errors of the kept windows'
       noise, since a diverging window's own jumps must not excuse it), or when its loss *climbed* through
       the window (a least-squares slope ``rollback_z`` standard errors above 0 that adds up to more than
       ``rollback_rise`` of the mean). The noise is estimated from successive differences, so a climb is
       not mistaken for noise. In the first window the reference is the first loss, and only a rise by
       half counts. Undoing means TLR restores the weights the window started from (the snapshot it holds
       anyway), clears the inner optimizer's first moments, and multiplies the rate by
       ``rollback_factor``. After ``max_rollbacks`` rollbacks in a row on finite losses the window is kept
       and the rate only lowered by ``1 - γ`` (the rise is then not the rate's doing), so a rising loss
       cannot freeze training. A rollback right after a climb (:meth:`bracketed`; a non-finite window's too)
       lands at most halfway back, in log, between the rate the climb started from (its window was kept) and
       the one that failed: ``factor <= last_factor ** -1/2``. After a first ×``max_factor`` climb that is 10×
       the last kept rate, not 30×: a rate 30× too high may churn the loss without a rise the tests above see,
       and the rule then climbed from it (a digits MLP, SGD m0.9, batch 16, from α0 = 1e-2 ended at 0.99 nats,
       the tuned rate at 0.005; halfway: 0.005). With the budget's decay ahead (``total_steps``), on a floor
       the rule trusts (:meth:`on_floor`: settled, more than ``1 / pool`` steady windows seen), the first
       rollback in a row of a jump or a climb (not a blow-up, 7) cuts by ``floor_rollback_factor`` only: one
       window's rise after many calm ones at the same rate is more often a mini-batch spike than a rate gone
       wrong, the restored weights already undo it, and the hold (9) never climbs back what a ×0.3 cut took (a
       20-epoch Fashion-MNIST run held a third of its rate from the spike to the decay and ended 1.3× higher);
       a rise that repeats is rolled back by ``rollback_factor``. Without a budget the deep cut stays: there
       it is the rule's own annealing (short runs lost up to 15× without it; docs/rules.md), given back
       over as long as the run has lasted (15).
    2. **Trust the Newton step while searching.** A step that lowers the rate (``a < 0``) is taken
       undamped, ``factor = b / (b - a)``, the secant estimate of the line minimiser itself: the paper's
       damped step shrinks the rate by at most ``1 - γ`` a window, too slow to leave a divergent rate.
       Floored at ``1 / max_factor``. Until the rate has settled (6), over windows of at least
       ``search_window`` steps, a step that raises it is the secant's too, up to ``search_max_factor``
       (the damped step where that is larger: at ``a / b`` near 1 the secant extrapolates without
       bound). The damped climb spent a sixth of a 20-epoch run getting up, and topped out where the
       alignment crossed zero *late*, at a rate the rule then held too low (a run's settled rate
       follows its peak). Over shorter windows the secant is a Barzilai–Borwein step of a few gradient
       differences, not monotone on an ill-conditioned problem (PyTorch's optim_db tests, 20 steps: 8
       of 800 cases went the wrong way at K <= 5); they keep ``γ``.
    3. **No increase on a rising loss** (:meth:`newton`). A window whose mean loss *rose* beyond noise
       does not raise the rate: aligned windows with a rising loss are weight decay or momentum drifting.
    4. **The loss decides where Newton cannot** (:meth:`concave`). ``b - a <= 0``: a rising loss lowers
       the rate by ``1 - γ``; windows alike in length (``c <= 2b``) with the loss not rising mean steps
       too small to change the gradient, and the rate climbs by ``max_factor``; otherwise by ``1 + γ``.
       The window after one that started from empty first moments (the run's first, or one after a
       rollback) is longer by what SGD's momentum filling up from zero adds (:attr:`WindowStats.warmup`:
       ×3.7 at β = 0.9, K = 10), which the length test allows for where the loss did not fall beyond
       noise either: read as growth it held a rate from α0 = 1e-6 at ×1.33 for a
       window, and 50 steps of digits at batch 256 stalled at chance; where the loss fell, the rate
       already acts, and a ×100 climb from there overshot (digits from α0 = 1e-3: 0.008 → 0.84). Where
       every loss of the window equals the last window's exactly (a constant loss, a dead network; the
       weights moved by decoupled weight decay alone, as around AdamW with zero gradients), nothing says
       the rate is too small: it is held, here and in the Newton step (:meth:`newton`; the decay's windows
       have ``a / b`` at or just below 1, and either climb ran the decay up to 100 times faster a window).
       Not where the gradients are nonzero (:attr:`WindowStats.loss_unresolved`): the steps then changed
       the loss by less than its float resolution, which is a rate too small (Adam from 1e-9 on a loss of
       24 held for 20 windows, SGD from 1e-10 for the whole run).
    5. **Windows past the momentum's memory** (:meth:`window_length`). A window lasts at least
       ``momentum_windows`` times the inner optimizer's momentum horizon ``ceil(1 / (1 - β))`` steps:
       shorter windows share most of their momentum, so they look aligned whatever the landscape. With
       ``odd_windows=True`` the length is made odd (a period-two oscillation then shows as ``a < 0``
       instead of summing away); off by default (docs/rules.md has the measurement).
    6. **Climb fast once, then carefully.** Until the rule first lowers the rate, one window may raise it
       by ``max_factor`` (the paper's ×100, so α0 = 1e-6 reaches 1e-2 in two windows); after that the
       rate has *settled*, and a window raises it by at most ``settled_max_factor``. A rollback before
       any window was kept does not settle it: that cut is a safeguard's (1, 11), sized to undo a
       wrecked first window, not the Newton step's reading of the rate, and a search that stopped there
       held a rate it had never measured (from α0 = 1, MNIST ended at 0.0120 instead of 0.0096).
       Without an observed loss nothing vetoes a climb but a blow-up (7), which shows only once the
       weights are wrecked, and with one loss a window (K = 1) the loss tests have no noise of their own
       to judge a rise by: there, until the rate has settled, a window shorter than ``search_window``
       steps climbs at most as fast per step as a ``search_window``-step one may,
       ``max_factor ** (K / search_window)``. At K = 1 two ×100 climbs took Adadelta ×1e4 past its rate
       within PyTorch's own 20-step test; with the cap, that test's runs that went the wrong way over
       seeds 1–10 fell from 107 to 39 of 8,000 (docs/rules.md, "PyTorch's own optimizer table"). Where a
       window's losses do test a rise, the veto acts instead and the pace is left alone. Once settled the
       climbs are ``settled_max_factor``'s, not paced per step: paced there too, a digits MLP trained
       without its loss at K = 1–5 ended higher (SGD's median 0.29 → 0.39).
    7. **A blow-up sets a ceiling** (:meth:`blowup_growth`). At a stable rate the directions shrink or
       hold; ``c > blowup_ratio * b``, or as much over a streak of aligned growing windows (``c > b``,
       ``a >= b``: how an even window shows a period-two divergence), is an unstable direction taking
       over: per step it grew ``ρ = (c / b) ** (1 / (2 K))``, which for gradient descent along a curvature
       ``h`` is ``α h - 1``, so the stable rates are those below ``2 α / (1 + ρ)``. The window is rolled
       back with the rate cut to ``α / (1 + ρ)`` and the rate may not climb past 90 % of ``2 α / (1 + ρ)``
       again (nor past half a rate whose window went non-finite). Without an observed loss the blow-up
       alone decides; with one, only where the window's loss rose, and over windows of ``search_window``
       steps or more not within its noise (a steady loss: steps climbing out of float32's rounding grow the
       directions read per unit rate; a real blow-up shows in the next window's loss). Not right after the
       rate was lowered: a window that starts where the last one blew up has that place's large gradients.
    8. **Momentum's own alignment is not read as a signal** without a loss, nor while searching. Under
       pure noise consecutive momentum windows have ``a / b = ρ0 = noise_alignment(β, K)`` (0.52 for
       β = 0.9, K = 10); without an observed loss (nothing else vetoes a climb), and while the step up is
       the secant's (2: no damping absorbs it; read as curvature, AdamW's own alignment took a character
       model's rate ×4 past where it learns), the step reads ``(a - ρ0 b) / (1 - ρ0)`` instead
       (``noise_correction``). Once settled, the floor band (9) allows for ``ρ0``.
    9. **Once settled, the rate holds on a noise floor** (:meth:`settled_step`). On a noise floor the
       weights revert to their mean, so consecutive windows are anti-aligned (``a < 0``) although the
       rate is right, and momentum makes them aligned although nothing is learnt: a greedy Newton step
       reads either as a reason to move, and over the hundreds of windows of a whole run its small
       steps compound (×1e-4 on MNIST at 20 epochs, undamped down and damped up). Once settled, in a
       *steady* window (its mean loss within ``rollback_z`` standard errors of the previous one; at one
       loss a window, of the window means' running spread) the rule takes the Newton
       log-step ``ℓ`` relative to the running mean ``m`` of the steady windows' steps (over about
       ``1 / pool`` of them; from the first, or from the top of the band below if that climbs past it:
       started at 0, a mean rising to momentum's own level let windows of about its horizon climb by the
       difference over ``pool``, ×2.4 on a GRU around Adam; the first ``1 / pool`` steady windows take the
       plain step while ``m`` forms, so a rate still too high keeps coming down; without
       a budget, not a steady window's climb within the band below, which a floor alone explains: taken
       plain, five of them took a CIFAR-10 batch-norm net's rate ×3 past the best constant while its loss
       stood still, and nothing annealed it),
       ``m`` bounded to what a floor alone can show (:meth:`floor_band`: ``a / b`` down to -1/2, up to
       momentum's own alignment; with ``band_z`` > 0, opt-in, where momentum sets that top ``m`` passes it
       only by what exceeds ``band_z`` of ``m``'s own standard errors, from the running spread of the
       steps: a floor aligned by momentum alone centres on the top, and its noisy mean, above the top half
       the time, lets that noise's excess pass every window, ×4-×18 over 600 simulated windows; off by
       default, since on a small tabular set fitted exactly it let 2 of 20 runs around SGD m0.9 diverge),
       plus ``drift_gain`` of ``m``: ``log factor = (ℓ - clip(m)) + drift_gain · m``. Within the band these
       add up to ``(m_T - m_0) / pool``: a stationary ``ℓ`` makes the log-rate wander within bounds instead
       of drifting, a sustained change of alignment still moves the rate, and a signal steadier than any
       floor (a rate past the curvature's limit) passes. Windows whose loss moved beyond noise take the
       plain step; with the budget's decay ahead (``total_steps``: :attr:`WindowStats.annealed`) only a
       rise does: a fall is progress, and the greedy step down on it anneals early what the decay anneals
       at the end (a short run, whose loss falls fast from a rate still too high, needs that step: without
       a budget it stays).
       ``drift_gain = 1`` is the plain step everywhere (measured: it drifts). Cuts for the loss's sake
       (1, 3, 4, 7) are not pooled; to tell a rise from mini-batch noise they use the noise pooled over
       the kept windows (one window's own estimate is itself noisy) and ``rollback_z`` standard errors
       (``z`` with one loss a window, whose noise estimate includes the progress), so a rollback is rare
       on a floor (tests/test_rule_noise_floor.py). Annealing is left to a schedule
       (:class:`ntlr.TLR`'s ``total_steps``, or the user's).
    10. **No progress, no climb; long no progress, a cut** (:meth:`plateau`; off unless ``patience`` > 0).
       A window that sets no new lowest mean loss is *stale*. From ``ceil(patience / 2)`` stale windows
       in a row the rate may not climb, and at ``patience`` it is cut by ``plateau_factor`` (status
       ``plateau``) and the count restarts: a rate too high to learn (a dead plateau, where aligned
       windows keep calling for more) comes down, and a rate that still makes progress is left alone.
    11. **No long reach without progress at the start** (:meth:`overreached`). Until a window is kept
       (the first window, or every one so far rolled back: ``b = 0``), a window whose *reach*, its
       displacement over the norm of the weights it started from (:meth:`reach`:
       ``lr · √c / √<w, w>``), exceeds ``max_reach`` while its loss did not fall beyond noise is rolled
       back as a jump is (1). A starting rate far too high can wreck a network within its first window
       with no rise the other tests see: ReLUs die, a softmax saturates, the loss lands flat near chance,
       the window is kept, and every later window starts from a model that no longer learns, however
       right its rate becomes. Such windows move the weights by many times their norm; healthy ones by a
       fraction of it. A window whose loss fell is progress, whatever its reach: its mean beyond noise, or
       down a significant slope through the window (``LossEvidence.sank``; one noisy first loss is a weak
       reference: a linear model from torch's init on least squares was rolled back). Every rollback before a
       kept window that reached past ``trust`` (this one, a jump, a climb) cuts the rate to the one that
       would have kept it at ``trust`` (:meth:`within_trust`), if that is lower than
       ``rollback_factor``, and restarts the inner optimizer's second moments
       (:func:`ntlr.functional.restart_inner_statistics_`): the blown-up window's gradients would size
       Adam's steps for thousands of steps. Once a window was kept, the Newton step and the tests above
       judge the rate, and the weights' norm is no scale for a step any more (a linear model that starts
       near zero travels far past it: on least squares the test, applied throughout, rolled back windows
       every few and ended 480× higher). ``max_reach=math.inf`` turns the test off, ``trust=math.inf``
       the cut and the restart (TLR sums ``<w, w>`` unless both are off).

    12. **A sinking floor raises the rate** (:meth:`sinking`). The hold (9) is right on a floor that
       stays where it is; where the loss goes to zero (a model that interpolates its data, without weight
       decay) the gradients vanish with it and each window's direction ``c`` is smaller than the last,
       while the windows look as anti-aligned as on a floor, so the hold kept MNIST's MLP at a third of
       the best constant rate (8.5e-4 against 5.0e-5 for the best constant, 3.3e-6 for Mechanic, whose
       rate grows all run). Once settled, the rate carries ``(norm_ref / c) ** sink_exponent``, with
       ``norm_ref`` the ``c`` of the first settled kept window: each window applies that multiplier's
       change since the last, so it telescopes, and a stationary ``c`` (a floor, whatever its noise)
       leaves the rate where it was, while directions that shrink ×100 raise it ×3.2. Caps (6, 7) still
       apply; what they trim of the floor's climb, and a climb that a rising loss or a plateau vetoes,
       is deferred, not lost; a rolled-back window's ``c`` is not read; windows shorter than
       ``search_window`` steps are not read either (a few steps' directions shrink on any converging
       quadratic faster than a rate may follow: PyTorch's optim_db test at K = 1 went the wrong way).
       ``sink_exponent = 0`` turns it off. With weight decay the directions stop shrinking at the decay's
       floor. Under Adam they can *grow* while its second moments settle, and the multiplier then lowers
       the rate (the quick tier's digits MLP from α0 = 1e-6: 0.0007 instead of 0.004, a worse final
       loss; docs/rules.md).

    13. **A loss that crept up is a rise** (:meth:`crept`). Each window is judged against the one before,
       so a loss that climbs a little every window, each step within the noise, passes every test above,
       and the hold (9) keeps the rate that drives it up (a GRU around Adam with the budget known: the
       loss crept from 0.06 to 0.6 over 600 steps at a held rate of 0.02-0.04, and five of eight runs
       ended on that plateau). Once settled, the rule keeps a running mean of the window means (over about
       ``1 / pool`` windows) and its lowest value; where the running mean lies above that lowest value by
       more than ``rollback_rise`` of it and by more than ``z`` standard errors of the difference of two
       such means on a stationary floor, it is a rise: the rate is cut by ``1 - γ`` (status
       ``loss_guard``) and the lowest value restarts from the current mean, so a loss that keeps creeping
       keeps being cut, and one that stays where it landed is cut only while the mean catches up. One
       window's mean against the lowest of hundreds of noisy ones would fire on a floor (that minimum sits
       several standard errors low). ``creep=False`` turns it off.

    14. **A rate that runs away is stopped** (:meth:`runaway`). Where a small model fits its training set
       exactly, its gradients vanish and the windows keep asking for more (12's multiplier and the Newton
       climbs): on 178 wine examples around SGD the rate went from 2.7 to 5e9, and the first gradient of
       ordinary size then wrecked the weights (one run of eight ended at a loss of 606 from 1.03;
       ``benchmarks/held_out.py --pairs tabular``). Once settled, a climb stops at the larger of
       ``runaway_factor`` (4) times the rate the search settled at and the rate at which a window whose
       direction were as large as the settled reference ``norm_ref`` (12) would move the weights by
       ``runaway_reach`` (10) times their norm. It never cuts, and below ``runaway_factor / 2`` times
       the settled rate nothing is summed for it (TLR sums ``<w, w>`` only above that:
       :meth:`uses_weight_norm`). ``runaway_factor=inf`` turns it off.
    15. **A marginal spike's cut is given back** (:meth:`owe`, :meth:`given_back`). Without a budget, a
       rollback (1) that is the first in a row on a floor the rule trusts (settled, a window kept, more
       than ``1 / pool`` steady windows) of a window whose mean loss rose by at most ``give_back_rise``
       (half) of the last one's is more often mini-batch noise past the jump test's threshold than a rate
       gone wrong: the restored weights undo it, and the ×0.3 cut would stand for the rest of the run (the
       hold, 9, never climbs back), so such rare cuts compounded over a long run (60 epochs of
       Fashion-MNIST: cuts at epochs 6.6 and 24.5, rises of 13-19 %, left a tenth of the best constant rate
       for 35 epochs). The cut is owed and given back in equal log-steps over ``give_back`` times as many
       windows as the group has had, so one late in a short run still anneals it. A larger rise is the
       rate's doing (near zero losses a rate at the edge of stability spikes by 60 % to 8x: there the cut
       is the annealing that reaches them, and giving it back made a GRU around Adam 60x worse on the
       held-out tasks; docs/rules.md), and so is a second rollback in a row: the debt is dropped and the
       cuts stand, as do a blow-up's (7) and a non-finite window's. Nothing is given back on a window whose
       loss rose or that a loss test cut (3, 10, 13). With the budget's decay ahead the floor's first
       rollback cuts gently instead (1) and nothing is owed. ``give_back=inf`` turns it off.
    16. **A rise is measured against what training can remove** (:meth:`loss_size`). The jump, climb,
       creep and marginal-spike tests (1, 13, 15) take a rise relative to the loss, as if its floor were
       0; a loss with a constant part (an offset, an irreducible noise term several times what training
       removes) made every rise small by that measure, and nothing but a blow-up rolled back: digits MLP
       around SGD m0.9 from 1e-3 with 10 added to its cross-entropy climbed to a rate of 15 while its
       loss rose from 1.6 to 13 nats, and ended at chance (2.31; 0.045 without the offset). The size a
       rise is measured against is now at most ``loss_span`` times the span the loss has fallen through
       since its first window, once that span is more than ``span_z`` standard errors of a window's mean
       (on a floor from the start, as when fine-tuning, the span is noise, and measured against it every
       significant rise was a jump: 21 of tests/test_rule_noise_floor.py's floors rolled back too often).
       A loss that has fallen below three quarters of its first window's mean (every from-scratch run past
       its first windows) is measured as before; ``loss_span = 1`` also changed the early windows of runs
       whose loss falls slowly (a GRU near zero loss ended 10x higher). ``loss_span=inf`` turns it off.
    17. **A search's step too small to show climbs** (:meth:`newton`). Until the rate has settled (6), a
       Newton step down (``a < 0``) on a window whose loss is steady and whose reach (:meth:`reach`) is
       below ``search_reach`` (1e-6 of the weights' norm) climbs by ``max_factor`` instead: steps that
       small are mostly below the float32 weights' spacing, so the window's direction is rounding, and its
       ``a / b`` says nothing of the curvature. From α0 = 1e-11, Adagrad's first window on the digits MLP
       read ``a / b = -0.02``; the step down settled the search at 2.8e-5, and the run ended at chance
       (``benchmarks/protocol_probes.py --tables survey``). TLR sums ``<w, w>`` in every window until the
       group has settled. ``search_reach=0`` turns it off.
    18. **Without a loss, no climb on directions that grew** (:meth:`grown_blind`). With no loss to veto
       a climb (3), a window whose direction per unit rate grew past ``blind_growth`` (1.5) times the last
       one's (``c > 1.5 b``) keeps its rate: at a steady rate a gradient method's steps shrink as it
       converges, and steps that grow are what a rising loss or an instability look like from the
       weights alone. PyTorch's 20-step right-direction test without a loss (optim_db's cases at K = 1-10,
       seeds 1-10): 26 of 3,750 runs went the wrong way, 18 with it (Adadelta's first climbs at K = 2 most
       of the rest); the digits MLP without a loss (``benchmarks/rule_without_loss.py``) median 0.054 ->
       0.052, at chance 8 -> 7 of 72 (docs/rules.md). ``blind_growth=inf`` turns it off.

    19. **A short window that started high is undone with the window before it** (:meth:`started_high`).
       A window's losses are measured before its steps, so its last steps' damage shows only in the next
       window's first loss; rolled back to its own start, that window would restore the damage. Where a
       window of fewer than ``search_window`` steps is rolled back for a jump and its first loss is already
       above the last kept window's mean by ``rollback_rise`` of the loss's size, the rollback goes back to
       the kept window's start too (``u_old`` holds its displacement: no third buffer) and the next window
       is a first one. The quickstart at batch 128 on digits (K = 3): 4 of 6 runs had restored weights
       above the initial loss, none now; PyTorch's right-direction table 27 -> 23 of 8,000 wrong-way runs,
       ``rule_stress.py`` 23 -> 18 of 2,304. Longer windows keep the plain rollback: there the first loss
       is one step of many, and going back a window cost the quick tier's K = 18 runs 1.85x (docs/rules.md).

    The loss comes from ``step(closure)`` or :meth:`ntlr.TLR.observe_loss`; without it, 1 acts on
    non-finite inner products and blow-ups (7) only, 3 and the loss branches of 4 are off, and 18 acts.

    Where a window's displacement is mostly mini-batch noise, its statistics say nothing about the rate
    (noise through momentum aligns consecutive windows by ``ρ0`` at any rate): the search then settles
    where it started to read noise, and 9 holds it there. On a data set of a few hundred examples (a
    dozen steps an epoch) that is 2-12x the best constant rate's final loss; windows of a few epochs
    (``TLR(..., steps_per_epoch=N, p=3)``) bring it to 0.8-2.5x (``benchmarks/held_out.py``).
    """

    gamma: float = 0.33
    search_max_factor: float = 2.0
    search_window: int = 10
    max_factor: float = 100.0
    rollback_factor: float = 0.3
    floor_rollback_factor: float = 0.67
    rollback_rise: float = 0.1
    z: float = 3.0
    rollback_z: float = 3.0
    max_rollbacks: int = 3
    momentum_windows: int = 1
    settled_max_factor: float = 2.0
    blowup_ratio: float = 16.0
    odd_windows: bool = False
    noise_correction: bool = True
    pool: float = 0.2
    drift_gain: float = 0.0
    patience: int = 0
    plateau_factor: float = 0.5
    sink_exponent: float = 0.25
    max_reach: float = 1.0
    trust: float = 0.25
    creep: bool = True
    runaway_factor: float = 4.0
    runaway_reach: float = 10.0
    give_back: float = 1.0
    give_back_rise: float = 0.5
    loss_span: float = 3.0
    span_z: float = 10.0
    search_reach: float = 1e-6
    band_z: float = 0.0
    blind_growth: float = 1.5
    # TLR keeps this rule's factor during total_steps' decay and holds its climbs while a schedule has the
    # rate below its peak (a climb would read the scheduled cut as "too small a rate").
    holds_under_schedules: bool = True
    name: str = "robust"
    uses_loss: bool = True
    uses_stalled: ClassVar[bool] = True  # motionless (1) and the flat loss's hold (4) read them

    def __post_init__(self) -> None:
        _check_unit("gamma", self.gamma, low=0.0, high=1.0)
        check_max_factor("search_max_factor", self.search_max_factor)
        check_max_factor("max_factor", self.max_factor)
        _check_unit("rollback_factor", self.rollback_factor, low=0.0, high=1.0)
        _check_unit("floor_rollback_factor", self.floor_rollback_factor, low=0.0, high=1.0)
        if not (isinstance(self.rollback_rise, int | float) and 0.0 <= self.rollback_rise < math.inf):
            raise ValueError(f"rollback_rise must be a finite real number >= 0, got {self.rollback_rise!r}")
        for name in ("z", "rollback_z", "search_reach", "band_z"):
            value = getattr(self, name)
            real = isinstance(value, int | float) and not isinstance(value, bool)
            if not (real and 0.0 <= value < math.inf):
                raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
        check_max_factor("settled_max_factor", self.settled_max_factor)
        if not (isinstance(self.blowup_ratio, int | float) and self.blowup_ratio > 1.0):
            raise ValueError(f"blowup_ratio must be a real number > 1 (inf: off), got {self.blowup_ratio!r}")
        _check_unit("pool", self.pool, low=0.0, high=1.0)
        _check_unit("drift_gain", self.drift_gain, low=0.0, high=1.0, closed_low=True)
        for flag in ("odd_windows", "noise_correction", "holds_under_schedules"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        _check_unit("plateau_factor", self.plateau_factor, low=0.0, high=1.0)
        _check_unit("sink_exponent", self.sink_exponent, low=0.0, high=1.0, closed_low=True)
        for name in (
            "max_reach",
            "trust",
            "runaway_factor",
            "runaway_reach",
            "give_back",
            "loss_span",
            "span_z",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0.0):
                raise ValueError(f"{name} must be a real number > 0 (inf: off), got {value!r}")
        check_max_factor("blind_growth", self.blind_growth)  # a ratio bound >= 1 alike (inf: off)
        rise = self.give_back_rise
        if not (isinstance(rise, int | float) and not isinstance(rise, bool) and rise >= 0.0):
            raise ValueError(f"give_back_rise must be a real number >= 0 (inf: any rise), got {rise!r}")
        for name in ("max_rollbacks", "momentum_windows", "patience", "search_window"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")

    def __repr__(self) -> str:
        # Only what differs from the defaults: the defaults are 35 constants, and print(TLR(...)) showed
        # them all on one line.
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.repr and getattr(self, f.name) != f.default
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def uses_weight_norm(self, kept: bool, state: RobustState | None = None) -> bool:
        """Whether TLR hands the rule ``<w, w>`` (:attr:`WindowStats.weights_sq`): for the reach test
        (11), which acts only until a window of the group is ``kept``, and for the runaway guard (14), once
        the group's ``state`` has its rate within one settled climb of ``runaway_factor`` times the rate
        it settled at; and for the search's reach (17) while ``state`` has not settled."""
        if not kept and (math.isfinite(self.trust) or math.isfinite(self.max_reach)):
            return True
        if state is not None and not state.settled and self.search_reach > 0.0:
            return True
        if state is None or not state.settled or not math.isfinite(self.runaway_factor):
            return False
        return state.rate * self.settled_max_factor > self.runaway_factor * state.settled_rate

    def init(self) -> RobustState:
        """A param group's fresh state."""
        return RobustState(fresh_start=True)

    def window_length(self, update_every: int, group: Mapping[str, Any]) -> int:
        length = max(update_every, self.momentum_windows * momentum_horizon(group))
        return length + 1 if self.odd_windows and length % 2 == 0 else length

    # -- the decision: the first safeguard that fires, then the caps --------------------------------------
    def decide(self, stats: WindowStats, state: RobustState) -> Decision:
        decision = self._decide(stats, state)
        # Which windows start from empty first moments: the run's first, and each after a rollback (TLR
        # clears them). The window after such a one is longer by their ramp (4).
        if decision.rollback:
            state.fresh_start = True
        else:
            state.old_fresh, state.fresh_start = state.fresh_start, False
        return decision

    def _decide(self, stats: WindowStats, state: RobustState) -> Decision:
        decision = self.motionless(stats, state) or self.nonfinite(stats, state)
        if decision is None:
            blowup = self.blowup_growth(stats, state)
            evidence = self.loss_evidence(stats, state)
            decision = (
                self.diverged(stats, state, evidence, blowup)
                or self.overreached(stats, state, evidence)
                or self.first_window(stats, state)
                or self.grown_blind(self.newton(stats, state, evidence), stats)
            )
            decision = self.crept(decision, stats, state)
            decision = self.plateau(decision, stats, state)
            decision = self.given_back(decision, stats, state, evidence)
            scale = state.norm_scale
            decision = self.sinking(decision, stats, state)
            capped = self.capped(decision, stats, state)
            if capped.factor < decision.factor and state.norm_scale > scale:
                # The caps trimmed a climb the sinking floor (12) was part of: its multiplier records
                # only what was applied (the sink's share trimmed first), and the rest is deferred.
                state.norm_scale = max(scale, state.norm_scale * capped.factor / decision.factor)
            return capped
        return self.capped(decision, stats, state)

    def grown_blind(self, decision: Decision, stats: WindowStats) -> Decision:
        """Without a loss, a climb on a window whose direction grew past ``blind_growth`` times the last
        one's is held (18): growing steps at a steady rate are what a rising loss looks like from the
        weights alone."""
        if stats.loss is not None or decision.rollback or not decision.factor > 1.0:
            return decision
        if not stats.c > self.blind_growth * stats.b:
            return decision
        return Decision(1.0, Status.UPDATED)

    def crept(self, decision: Decision, stats: WindowStats, state: RobustState) -> Decision:
        """A loss that crept up (13): once settled, the running mean of the window means (over about
        ``1 / pool`` windows) above its lowest value so far by more than ``rollback_rise`` of that and by
        more than ``z`` standard errors of the difference of two such means on a floor gets at most
        ``1 - γ``, status ``loss_guard``, and the lowest value restarts from the current one. Rollbacks
        pass; off with ``creep=False``."""
        loss = stats.loss
        if not self.creep or decision.rollback or not state.settled or loss is None:
            return decision
        if not (math.isfinite(loss.mean) and math.isfinite(loss.mssd_variance)):
            return decision
        if not math.isfinite(state.level):
            state.level = state.low_level = loss.mean
            return decision
        state.level += self.pool * (loss.mean - state.level)
        if not state.level >= state.low_level:
            state.low_level = state.level
            return decision
        # Two running means of a floor's window means (variance s^2 each): the difference's variance.
        # As the jump test's: the window's own noise, or the kept windows' pooled one where larger (max
        # returns the window's where nothing is pooled yet: NaN compares false).
        variance = max(loss.mssd_variance, state.noise)
        noise = math.sqrt(2.0 * self.pool / (2.0 - self.pool) * variance)
        rise = state.level - state.low_level
        if rise > self.rollback_rise * self.loss_size(state.low_level, state) and rise > self.z * noise:
            state.low_level = state.level
            return Decision(min(decision.factor, 1.0 - self.gamma), Status.LOSS_GUARD)
        return decision

    def plateau(self, decision: Decision, stats: WindowStats, state: RobustState) -> Decision:
        """Progress gate (10): no climb after ``ceil(patience / 2)`` windows without a new lowest mean
        loss, a cut by ``plateau_factor`` after ``patience``. Rollbacks and loss-less windows pass."""
        loss = stats.loss
        if self.patience == 0 or decision.rollback or loss is None or not math.isfinite(loss.mean):
            return decision
        if not state.best <= loss.mean:  # a new lowest mean (or the first)
            state.best, state.stale = loss.mean, 0
            return decision
        state.stale += 1
        if state.stale >= self.patience:
            state.stale = 0
            return Decision(min(decision.factor, self.plateau_factor), Status.PLATEAU)
        if decision.factor > 1.0 and 2 * state.stale >= self.patience:
            return Decision(1.0, Status.PLATEAU)
        return decision

    def sinking(self, decision: Decision, stats: WindowStats, state: RobustState) -> Decision:
        """A sinking floor (12): once settled, the rate times ``(norm_ref / c) ** sink_exponent``, ``c`` the
        window's squared direction norm and ``norm_ref`` the first settled kept window's. Each window
        applies the change of that multiplier since the last, so the product telescopes: a stationary
        ``c`` leaves the rate where it was, whatever its noise. A climb a vetoing decision (a rising loss,
        a plateau) holds is deferred, not lost: the multiplier is absolute."""
        if self.sink_exponent == 0.0 or not state.settled or decision.rollback:
            return decision
        if stats.steps < self.search_window:
            # A few steps' directions shrink on any quadratic as it converges, faster than the rate may
            # follow (PyTorch's optim_db, 20 steps at K = 1: Adadelta overshot); as with the secant (2).
            return decision
        if not (stats.c > 0.0 and math.isfinite(stats.c)):
            return decision
        if not math.isfinite(state.norm_ref):
            state.norm_ref = stats.c
            return decision
        target = (state.norm_ref / stats.c) ** self.sink_exponent
        change = target / state.norm_scale
        if change > 1.0 and decision.status in (Status.LOSS_GUARD, Status.PLATEAU):
            return decision
        state.norm_scale = target
        return Decision(decision.factor * change, decision.status)

    def capped(self, decision: Decision, stats: WindowStats, state: RobustState) -> Decision:
        """Climbs capped at ``max_factor`` until settled (6; per step over a short window whose loss cannot
        veto a climb), ``settled_max_factor`` after, and at the ceiling (7); records the decision in
        ``state``."""
        if decision.factor < 1.0 and not (decision.rollback and stats.b == 0.0):
            # A rollback before any window was kept is a safeguard's cut (1, 11), not a reading of the
            # rate: the search (2) goes on from the rate it leaves.
            if not state.settled:
                state.settled_rate = stats.lr * decision.factor
            state.settled = True
        if state.settled and not math.isfinite(state.settled_rate) and stats.lr > 0.0:
            state.settled_rate = stats.lr  # a checkpoint from before 14: the rate it has now
        growth = self.settled_max_factor if state.settled else self.max_factor
        # No loss to veto a climb, or one loss a window (no noise of its own to test a rise against) (6):
        # a few steps' evidence climbs at a search window's pace per step.
        weak_veto = stats.loss is None or not math.isfinite(stats.loss.mssd_variance)
        if weak_veto and not state.settled and 0 < stats.steps < self.search_window:
            growth = growth ** (stats.steps / self.search_window)
        if decision.factor > growth:
            decision = Decision(growth, Status.CAPPED)
        if decision.factor > 1.0 and stats.lr > 0.0 and stats.lr * decision.factor > state.ceiling:
            # Never a cut for the ceiling's sake (a schedule may have raised the rate past it).
            decision = Decision(max(state.ceiling / stats.lr, 1.0), Status.CAPPED)
        decision = self.runaway(decision, stats, state)
        state.last_factor = decision.factor
        state.rate = stats.lr * decision.factor
        return decision

    def runaway(self, decision: Decision, stats: WindowStats, state: RobustState) -> Decision:
        """Once settled, a climb stops at the larger of ``runaway_factor`` times the settled rate and the
        rate at which a window with the settled reference direction (``norm_ref``, 12) would move the
        weights by ``runaway_reach`` times their norm (14); never a cut."""
        if decision.factor <= 1.0 or decision.rollback or not state.settled or not stats.lr > 0.0:
            return decision
        if not math.isfinite(state.settled_rate):
            return decision
        limit = self.runaway_factor * state.settled_rate
        weights_sq, reference = stats.weights_sq, state.norm_ref
        if weights_sq > 0.0 and math.isfinite(weights_sq) and reference > 0.0 and math.isfinite(reference):
            limit = max(limit, self.runaway_reach * math.sqrt(weights_sq / reference))
        if stats.lr * decision.factor <= limit:
            return decision
        return Decision(max(limit / stats.lr, 1.0), Status.CAPPED)

    # -- the safeguards, each a decision or None ----------------------------------------------------------
    def motionless(self, stats: WindowStats, state: RobustState) -> Decision | None:
        """The group's weights moved in neither window (no parameters, or none with a gradient): the loss,
        shared by all groups, says nothing about its rate, and there is nothing to roll back. Where they had
        finite, nonzero gradients along which no step of the rate registers (:attr:`WindowStats.stalled`)
        the steps were too small for the weights' precision (plain SGD from 1e-8 on float32 weights of size
        0.3; not L-BFGS stopped at its tolerances, whose steps could have registered): while the search is on
        (6) the rate climbs by ``max_factor``, as for steps too small to show in the loss (4), or it would
        never move. Once settled, weights that stop moving have converged to the floating-point resolution
        (a full-batch least squares at its optimum): the rate is held."""
        if stats.b == 0.0 and stats.c == 0.0:
            if stats.stalled and not state.settled:
                return Decision(self.max_factor, Status.CAPPED)
            return Decision(1.0, Status.FIRST_WINDOW if stats.window == 0 else Status.NONPOSITIVE_DENOMINATOR)
        return None

    def nonfinite(self, stats: WindowStats, state: RobustState) -> Decision | None:
        """Non-finite inner products or loss (1): always undone, never counted towards max_rollbacks."""
        loss = stats.loss
        if stats.finite and (loss is None or math.isfinite(loss.mean)):
            return None
        if stats.lr > 0.0:
            state.lower_ceiling(0.5 * stats.lr)
        state.debt = state.debt_step = 0.0
        # Right after a climb, halfway back as for a jump (:meth:`bracketed`).
        factor = min(self.rollback_factor, self.bracketed(stats, state))
        return Decision(factor, Status.ROLLBACK, rollback=True)

    def diverged(
        self, stats: WindowStats, state: RobustState, evidence: LossEvidence | None, blowup: float | None
    ) -> Decision | None:
        """A jump, a climb through the window, or a blow-up (1, 7): rolled back (or, after
        ``max_rollbacks`` in a row, kept with the rate lowered)."""
        restart = False  # a window that reached past trust blew up: restart the inner statistics too
        if evidence is not None:
            # A growing direction under a loss that fell is progress, and under one that stood still
            # (within its noise) not yet a blow-up the loss shows: climbing out of rates whose steps float32
            # rounds away, the directions read per unit rate grow as the steps start to register (from
            # 1e-9 on the digits MLP, 49-fold at a steady loss: read as a blow-up, the search was rolled
            # back and settled at 1e-8). A real one shows in the next window's loss. Only over windows long
            # enough to tell noise from a trend: one or two successive differences call a loss exploding
            # within the window noisy (torch's ASGD at K = 2 went to 1e7 instead of rolling back).
            averaged = stats.steps >= self.search_window
            blown = blowup is not None and evidence.rise > 0.0 and not (evidence.steady and averaged)
            if not (evidence.jumped or evidence.climbed or blown):
                return None
            factor, restart = self._rollback_cut(stats)
            if blowup is not None:
                factor = min(factor, self._after_blowup(stats, state, blowup))
            elif self.on_floor(stats, state):
                factor = max(factor, self.floor_rollback_factor)
            factor = min(factor, self.bracketed(stats, state))
            self.owe(factor if blowup is None else 1.0, stats, state, evidence)
            kept = Decision(1.0 - self.gamma, Status.LOSS_GUARD)
            deeper = evidence.jumped and self.started_high(stats, state)
        elif blowup is not None:
            # No loss to consult: the weights alone say the window diverged.
            factor = self._after_blowup(stats, state, blowup)
            kept = Decision(factor, Status.UPDATED)
            deeper = False
        else:
            return None
        return self._roll_back(factor, kept, state, restart=restart, deeper=deeper)

    def started_high(self, stats: WindowStats, state: RobustState) -> bool:
        """Whether a short window (fewer than ``search_window`` steps) began where the loss had already
        jumped (19): its first loss, measured at its start before any of its steps, is above the last kept
        window's mean by more than ``rollback_rise`` of the loss's size. The kept window's last steps did
        it, which its own losses (each measured before its step) could not show; a rollback then goes back
        to that window's start too."""
        loss, prev = stats.loss, stats.prev_loss
        if not (0 < stats.steps < self.search_window and stats.b > 0.0):
            return False
        if loss is None or prev is None or not (math.isfinite(loss.first) and math.isfinite(prev.mean)):
            return False
        return loss.first - prev.mean > self.rollback_rise * self.loss_size(prev.mean, state)

    def first_on_trusted_floor(self, stats: WindowStats, state: RobustState) -> bool:
        """Whether a rollback now is the first in a row on a floor the rule trusts: settled, a window kept,
        and more than ``1 / pool`` steady windows seen (9). Such a rise is more often a mini-batch spike
        than a rate gone wrong: cut gently with the budget's decay ahead (1), owed without it (15)."""
        return (
            state.settled
            and stats.b > 0.0
            and state.rollbacks == 0
            and state.steady_windows > round(1.0 / self.pool)
        )

    def on_floor(self, stats: WindowStats, state: RobustState) -> bool:
        """Whether a rollback now is the first in a row on a floor the rule trusts, with the budget's decay
        ahead (1): :attr:`WindowStats.annealed` and :meth:`first_on_trusted_floor`."""
        return stats.annealed and self.first_on_trusted_floor(stats, state)

    def owe(self, factor: float, stats: WindowStats, state: RobustState, evidence: LossEvidence) -> None:
        """Record a rollback's cut ``factor`` as owed (15) where it is the first in a row on a floor the rule
        trusts (settled, a window kept, more than ``1 / pool`` steady windows) without a budget, to be given
        back over ``give_back`` times as many windows as the group has had; any other rollback (a second
        in a row says the rise was the rate's; a blow-up; with the budget's decay ahead) clears the debt."""
        reference = _reference(stats)
        marginal = reference is not None and evidence.rise <= self.give_back_rise * self.loss_size(
            reference, state
        )
        owed = not stats.annealed and marginal and self.first_on_trusted_floor(stats, state)
        if not math.isfinite(self.give_back) or not owed or factor >= 1.0:
            state.debt = state.debt_step = 0.0
            return
        # Added to what an earlier spike's cut still owes: a rollback that is not the second in a row
        # says nothing about the one before.
        state.debt += -math.log(factor)
        state.debt_step = state.debt / max(self.give_back * stats.window, 1.0)

    def given_back(
        self, decision: Decision, stats: WindowStats, state: RobustState, evidence: LossEvidence | None
    ) -> Decision:
        """What a spike's rollback still owes (15), given back a share a window: not on a window whose loss
        rose or that a loss test cut (creep, plateau), nor on a rollback."""
        if state.debt <= 0.0 or decision.rollback:
            return decision
        if decision.status in (Status.LOSS_GUARD, Status.PLATEAU) or (evidence is not None and evidence.rose):
            return decision
        step = min(state.debt_step, state.debt)
        state.debt -= step
        return Decision(decision.factor * math.exp(step), decision.status)

    def bracketed(self, stats: WindowStats, state: RobustState) -> float:
        """The largest factor a rollback of this window may take (1): halfway back, in log, from the rate
        the last decision climbed to towards the one it climbed from, whose window was kept
        (``last_factor ** -1/2``); 1 where the last decision did not climb or no window was kept yet (a
        first window's cut is the reach test's, 11)."""
        if stats.b > 0.0 and state.last_factor > 1.0:
            return float(state.last_factor**-0.5)
        return 1.0

    def overreached(
        self, stats: WindowStats, state: RobustState, evidence: LossEvidence | None
    ) -> Decision | None:
        """Before any kept window, one that moved the weights by more than ``max_reach`` times their norm
        and did not lower the loss (11): rolled back (or, after ``max_rollbacks`` in a row, kept with the
        rate lowered)."""
        progress = evidence is not None and (evidence.fell or evidence.sank)
        if evidence is None or progress or not self.reach(stats) > self.max_reach or stats.b > 0.0:
            return None
        factor, restart = self._rollback_cut(stats)
        return self._roll_back(factor, Decision(1.0 - self.gamma, Status.LOSS_GUARD), state, restart=restart)

    def _rollback_cut(self, stats: WindowStats) -> tuple[float, bool]:
        """A rollback's rate factor, ``rollback_factor`` or lower where :meth:`within_trust` says so, and
        whether the rollback restarts the inner statistics: a cut below ``rollback_factor`` means the
        window reached far past ``trust`` (11)."""
        factor = min(self.rollback_factor, self.within_trust(stats))
        return factor, factor < self.rollback_factor

    def within_trust(self, stats: WindowStats) -> float:
        """The factor that brings a rolled-back window's reach back to ``trust`` (11), taking the
        displacement to scale with the rate; 1 where the reach is unknown or within it, or once a window
        was kept. Floored at ``1 / max_factor**2``: a rate so far off that one window moved the weights
        many times their norm comes down in one rollback, not in a string of ×``rollback_factor`` cuts that
        each wreck the weights again."""
        reach = self.reach(stats)
        if not reach > self.trust or stats.b > 0.0:
            return 1.0
        return max(self.trust / reach, 1.0 / self.max_factor**2)

    def reach(self, stats: WindowStats) -> float:
        """The window's displacement over the norm of the weights it started from, ``lr · √c / √<w, w>``
        (11); NaN where that norm is unknown or 0 (weights started at zero have no scale to weigh by)."""
        if not stats.weights_sq > 0.0 or not math.isfinite(stats.weights_sq):
            return math.nan
        return stats.lr * math.sqrt(max(stats.c, 0.0) / stats.weights_sq)

    def _roll_back(
        self,
        factor: float,
        kept: Decision,
        state: RobustState,
        *,
        restart: bool = False,
        deeper: bool = False,
    ) -> Decision:
        """Roll the window back with ``factor`` (and ``restart`` the inner optimizer's statistics; go
        ``deeper``, undoing the last kept window too, 19), unless ``max_rollbacks`` windows in a row
        already were: then ``kept`` (the rise is then not the rate's doing, and training must go on)."""
        if state.rollbacks < self.max_rollbacks:
            state.rollbacks += 1
            return Decision(factor, Status.ROLLBACK, rollback=True, restart=restart, deeper=deeper)
        state.rollbacks = 0
        return kept

    def first_window(self, stats: WindowStats, state: RobustState) -> Decision | None:
        """No u_old yet: the first window, or every window so far was rolled back."""
        if stats.window == 0 or stats.b == 0.0:
            state.rollbacks = 0
            return Decision(1.0, Status.FIRST_WINDOW)
        return None

    def newton(self, stats: WindowStats, state: RobustState, evidence: LossEvidence | None) -> Decision:
        """The Newton step (2, 8, 9), vetoed upwards by a rising loss (3); :meth:`concave` where
        ``b - a <= 0``."""
        state.rollbacks = 0
        a, b = stats.a, stats.b
        # While searching, over windows long enough to average, the step up is the secant's (2).
        searching = not state.settled and stats.steps >= self.search_window
        if self.noise_correction and (stats.loss is None or searching):
            # Momentum's own alignment is no reason to climb (8): without a loss to veto a climb, and
            # while the step up is the secant's.
            rho = noise_alignment(stats.momentum, stats.steps)
            a = (a - rho * b) / (1.0 - rho)
        rose = evidence is not None and evidence.rose
        if loss_unchanged(stats.loss, stats.prev_loss) and not stats.loss_unresolved:
            # A loss no step changes (a constant loss, a dead network, a hinge loss at 0; the weights moved by
            # decoupled weight decay alone, whose windows are aligned, a / b just below 1 or equal to it):
            # neither the Newton step nor the concave branch's "steps too small to show" (4) has anything to
            # read, and either climb would run the decay up to 100 times faster a window. Not where the
            # gradients are nonzero (loss_unresolved): there the steps are too small for the loss's float
            # resolution (Adam from 1e-9 on a loss of 24 held its rate for 20 windows, SGD from 1e-10 for
            # the whole run), and the concave branch's climb is the right reading.
            return Decision(1.0, Status.UPDATED if b - a > 0.0 else Status.NONPOSITIVE_DENOMINATOR)
        if not b - a > 0.0:
            return self.concave(stats, evidence, ramp=stats.warmup if state.old_fresh else 1.0)
        if a < 0.0:
            factor = max(b / (b - a), 1.0 / self.max_factor)  # undamped (2)
            if not state.settled and evidence is not None and evidence.steady:
                # A step down on a window that moved the weights by less than search_reach of their norm,
                # its loss steady: the direction is float32's rounding, not curvature (17).
                if self.reach(stats) < self.search_reach:
                    return Decision(self.max_factor, Status.CAPPED)
        else:
            step = newton_factor(a, b, gamma=self.gamma, max_factor=self.max_factor)
            # NONFINITE only through overflow: a climb past max_factor.
            factor = self.max_factor if step.status == Status.NONFINITE else step.factor
            if searching:
                # The secant's step up to search_max_factor; past it (a / b near 1, where the secant
                # extrapolates without bound) the damped step, itself large there.
                factor = max(factor, min(b / (b - a), self.search_max_factor))
        # Once settled, a window on a floor holds (9); with the budget's decay ahead (total_steps), so does
        # one whose loss fell: the greedy step's pull down is then annealing that the schedule does later.
        if state.settled and evidence is not None:
            if evidence.steady or (stats.annealed and not evidence.rose):
                # Without a budget nothing anneals an overshoot away: there a floor-sized climb waits (9).
                gate = evidence.steady and not stats.annealed
                factor = self.settled_step(factor, stats, state, gate=gate)
        if factor > 1.0 and rose:
            return Decision(1.0, Status.LOSS_GUARD)
        if factor >= self.max_factor:
            return Decision(self.max_factor, Status.CAPPED)
        return Decision(factor, Status.UPDATED)

    def searching(self, state: RobustState) -> bool:
        """Whether the rate's scale is still being found (not settled, 6): TLR lets its climbs pass under a
        user's schedule, whatever it has cut, or a schedule decaying from step 0 would hold α0."""
        return not state.settled

    def progressed(self, stats: WindowStats) -> bool:
        """Whether the window's mean loss fell below the last one's by more than ``rollback_z`` of their
        noise (their successive-difference standard errors): progress, which a schedule's cut alone does
        not make, says a settled rate is still below its scale (a search can settle early on a step down
        at a fraction of it). TLR lets such a window's climb pass a schedule that has cut less than half."""
        loss, prev = stats.loss, stats.prev_loss
        if loss is None or prev is None:
            return False
        noise = loss.mssd_variance + prev.mssd_variance
        return math.isfinite(noise) and loss.mean - prev.mean < -self.rollback_z * math.sqrt(noise)

    def settled_step(
        self, factor: float, stats: WindowStats, state: RobustState, *, gate: bool = True
    ) -> float:
        """The settled Newton factor (9): the log of ``factor`` less the part of it a noise floor explains,
        the running mean of the settled log-steps bounded by what a floor can show (:meth:`floor_band`);
        plus ``drift_gain`` of that mean; updates the mean. The log-step is clipped to the settled range
        first, so that one outlier window moves the mean by no more than a settled climb. ``gate``: while the
        mean forms, hold a climb no larger than a floor's own (a steady window, no budget's decay ahead)."""
        step = min(max(math.log(factor), -math.log(self.max_factor)), math.log(self.settled_max_factor))
        low, high = self.floor_band(stats)
        # The first settled window: a step down right after the decrease that settled the rate is the
        # floor's own anti-alignment, and a step up within what momentum's own alignment gives a floor is
        # the floor's too (the mean starts there); a larger one says that decrease went too far, and its
        # excess passes (the mean starts at the band's top). Started at 0, a mean that then rose to
        # momentum's level let the windows meanwhile climb by the difference over ``pool`` (short windows:
        # ×2.4 on a GRU around Adam at K = 11, whose rate then held at the edge of stability).
        mean = state.alignment if math.isfinite(state.alignment) else min(step, high)
        deviation = (step - mean) ** 2
        spread = state.spread
        state.spread = deviation if not math.isfinite(spread) else spread + self.pool * (deviation - spread)
        state.alignment = mean + self.pool * (step - mean)
        state.steady_windows += 1
        if state.steady_windows <= round(1.0 / self.pool):
            # The floor's mean is not known yet, nor that this is a floor: a rate still too high (a loss
            # stuck high looks steady too) keeps coming down meanwhile. Gated, a climb no larger than a
            # floor's own (momentum's alignment alone) waits for the mean: taken plain, five of them took a
            # batch-norm net's rate x3 past its best while its loss stood still, and nothing annealed it.
            # With the budget's decay ahead it passes: the decay settles an overshoot, and held there, the
            # gauntlet's annealed 220-step runs ended 1.2x higher (a fall is progress, not a floor: 1.3x).
            held = gate and 1.0 < factor and math.log(factor) <= high
            return 1.0 if held else factor
        # A floor aligned by momentum alone centres its log-steps on the band's top, so its running mean
        # is above the top about half the time; clipped there, that noise's excess passed every window
        # (x4-x18 over 600 simulated windows at beta = 0.9 and 0.8). With band_z > 0 the top gives way
        # only to a mean band_z of its own standard errors above it. Off by default: on the wine set
        # around SGD m0.9 (fitted exactly), band_z = 2 ended 2 of 20 runs diverged (none without it).
        # Without momentum the top is 0, and there a mean just above it is the landscape's (plain SGD on
        # digits climbs on it: x1.05, up to x1.8 with the margin there), so no margin.
        if high > 0.0 and self.band_z > 0.0:
            high += self.band_z * math.sqrt(self.pool / (2.0 - self.pool) * state.spread)
        return math.exp(step - min(max(mean, low), high) + self.drift_gain * mean)

    def floor_band(self, stats: WindowStats) -> tuple[float, float]:
        """The Newton log-steps a noise floor alone can produce (9). Weights that wander around a minimum
        revert to it, so consecutive windows are anti-aligned, but never below ``a / b = -1/2`` (gradient
        descent on a noisy quadratic: ``a / b = -(1 - q^K) / 2`` with ``|q| < 1`` at a stable rate);
        momentum aligns them, by at most ``noise_alignment(β, K)``. A steadier signal than that is the
        landscape's, and passes (a rate past the curvature's limit shows ``a / b`` towards -1)."""
        low = -math.log(1.5)  # the undamped step at a / b = -1/2
        rho = noise_alignment(stats.momentum, stats.steps) if stats.loss is not None else 0.0
        high = math.log1p(self.gamma * rho / (1.0 - rho))
        return low, high

    def concave(self, stats: WindowStats, evidence: LossEvidence | None, ramp: float = 1.0) -> Decision:
        """No Newton step (``b - a <= 0``: the loss looks concave along the windows, or a period-two
        oscillation shows through an even K): the loss tells which (4). ``ramp``: how much longer this
        window is than the last from momentum filling up alone (that window started from empty moments)."""
        if evidence is not None and evidence.rose:
            return Decision(1.0 - self.gamma, Status.LOSS_GUARD)
        # Where the loss did not fall either, the steps are still too small to show, and growth up to the
        # ramp's is the buffer's. A loss that fell says the rate already acts, and a x100 climb from there
        # overshoots.
        fell = evidence is not None and evidence.fell
        if stats.loss is not None and stats.c <= 2.0 * (1.0 if fell else ramp) * stats.b:
            # Aligned windows of a steady length, the loss not rising: the weights moved too little for the
            # gradient to change; the rate is far too small.
            return Decision(self.max_factor, Status.CAPPED)
        if stats.loss is not None:
            return Decision(1.0 + self.gamma, Status.NONPOSITIVE_DENOMINATOR)
        return Decision(1.0, Status.NONPOSITIVE_DENOMINATOR)

    # -- the evidence -------------------------------------------------------------------------------------
    def loss_evidence(self, stats: WindowStats, state: RobustState) -> LossEvidence | None:
        """What the window's losses say (``None`` without a loss or a finite reference); folds the
        window's change into the running noise estimate used at K = 1."""
        loss = stats.loss
        reference = _reference(stats)
        if loss is None or reference is None:
            return None
        rise = loss.mean - reference
        prev = stats.prev_loss
        noise = _pooled_noise(state, prev)
        if prev is not None:
            # Noise from successive differences (a loss climbing within a window is not noise); for the
            # jump test the kept windows' (a diverging window's own jumps must not excuse it), pooled over
            # several of them: one window's estimate is itself noisy, and a low one made mini-batch noise
            # pass for a jump.
            own = loss.mssd_variance + prev.mssd_variance
            healthy = 2.0 * max(prev.mssd_variance, noise)
            z_jump = self.rollback_z
            if not math.isfinite(own):
                # One loss a window (K = 1): no within-window spread; use the spread of the window means'
                # changes so far (an overestimate: it includes the progress, so z, not rollback_z).
                own = healthy = state.change_sq if math.isfinite(state.change_sq) else 0.0
                z_jump = self.z
            change_sq = rise * rise
            previous = state.change_sq if math.isfinite(state.change_sq) else change_sq
            state.change_sq = 0.8 * previous + 0.2 * change_sq
            size = self.loss_size(reference, state)
            jumped = rise > self.rollback_rise * size and rise > z_jump * math.sqrt(healthy)
            rose = rise > self.z * math.sqrt(own)
            steady = abs(rise) <= self.rollback_z * math.sqrt(own)
        else:
            # First window, against the first loss: one loss has no noise estimate of its own; only a rise
            # by half counts (the trend test catches a climb). A healthy first window ends below its start.
            jumped = rise > 0.5 * abs(reference)
            rose = steady = False
            own = loss.mssd_variance
        fell = rise < -self.rollback_z * math.sqrt(own) if math.isfinite(own) else rise < 0.0
        # The loss climbed through the window: a divergence starting mid-window, which the window mean
        # alone hides behind the steps before it. Its slope's noise is the window's own or, where larger,
        # the kept windows' pooled noise (a quiet window's own estimate undersells it).
        trend_variance = loss.trend_variance
        if noise > loss.mssd_variance > 0.0:
            trend_variance *= noise / loss.mssd_variance

        def significant(slope: float) -> bool:
            # A slope rollback_z standard errors above 0 that adds up to rollback_rise of the mean.
            return slope > self.rollback_z * math.sqrt(trend_variance) and slope * (
                stats.steps - 1
            ) > self.rollback_rise * self.loss_size(loss.mean, state)

        climbed = significant(loss.trend)
        # Its mirror: a loss falling through the window, which its mean against one noisy reference loss
        # (the first window's) may not show beyond noise.
        sank = rise < 0.0 and significant(-loss.trend)
        if math.isfinite(loss.mean):
            # The loss's span (16), taken after this window's tests: they read the windows before it.
            if not math.isfinite(state.first_loss):
                state.first_loss = loss.mean
            if not state.lowest <= loss.mean:
                state.lowest = loss.mean
        return LossEvidence(rise, jumped, rose, climbed, steady, fell, sank)

    def loss_size(self, value: float, state: RobustState) -> float:
        """The size a rise of the loss is measured against (1, 13, 15): ``|value|``, the loss taken as 0 at
        its floor, but no more than ``loss_span`` times the span the loss has fallen through since its first
        window, once that span is beyond noise: ``span_z`` standard errors of a window's mean (16)."""
        span = state.first_loss - state.lowest
        if not (math.isfinite(span) and span > self.span_z * math.sqrt(state.noise)):
            return abs(value)  # NaN noise (none pooled yet, or one loss a window) compares false
        return min(abs(value), self.loss_span * span)

    def blowup_growth(self, stats: WindowStats, state: RobustState) -> float | None:
        """The per-step growth ``ρ`` of a direction that blew up by this window (7), else ``None``.

        One window whose direction grew ``blowup_ratio``-fold in squared norm, or a streak of aligned,
        growing windows (``c > b`` and ``a >= b``) that did so together: an even window sums gradient
        descent's period-two divergence into aligned windows that each grow only a little.
        """
        ratio = stats.c / stats.b if stats.window > 0 and stats.b > 0.0 and stats.c > 0.0 else 0.0
        aligned_growth = ratio > 1.0 and stats.a >= stats.b
        growth = math.log(ratio) if ratio > 1.0 else 0.0
        steps = max(stats.steps, 1)
        if aligned_growth:
            growth += state.growth
            steps += state.growth_steps
        state.growth, state.growth_steps = (growth, steps) if aligned_growth else (0.0, 0)
        if growth <= math.log(self.blowup_ratio):
            return None
        state.growth, state.growth_steps = 0.0, 0
        if state.last_factor < 1.0:
            # The rate was just lowered (or the window rolled back): a window that starts where the last
            # one blew up has the large gradients of that place, whatever its own rate.
            return None
        return math.exp(growth / (2.0 * steps))

    def _after_blowup(self, stats: WindowStats, state: RobustState, growth: float) -> float:
        """The rate factor after a blow-up with per-step growth ``growth``; lowers the ceiling."""
        state.lower_ceiling(0.9 * 2.0 * stats.lr / (1.0 + growth))  # 90 % of the stability limit
        return max(1.0 / (1.0 + growth), 1.0 / self.max_factor)


def _same(x: object, y: object) -> bool:
    return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))


def _pooled_noise(state: RobustState, prev: WindowLoss | None) -> float:
    """The kept windows' loss noise (squared standard error of a window mean), with ``prev`` folded in;
    NaN before any window had a finite estimate."""
    if prev is not None and math.isfinite(prev.mssd_variance):
        pooled = state.noise if math.isfinite(state.noise) else prev.mssd_variance
        state.noise = pooled + 0.2 * (prev.mssd_variance - pooled)
    return state.noise


def loss_unchanged(loss: WindowLoss | None, prev_loss: WindowLoss | None) -> bool:
    """Whether every loss of a window equals the one it is compared with (:class:`RobustRule`'s reference:
    the previous kept window's mean, else the window's first loss) exactly: no rise, and no spread (or a
    single loss, K = 1, whose variance TLR reports as infinite; a NaN spread is unknown, not none)."""
    if loss is None:
        return False
    reference = _reference_loss(loss, prev_loss)
    return (
        reference is not None
        and loss.mean - reference == 0.0
        and (loss.variance == 0.0 or loss.variance == math.inf)
    )


def _reference(stats: WindowStats) -> float | None:
    """The loss a window is compared with: the previous kept window's mean, else its own first loss."""
    return _reference_loss(stats.loss, stats.prev_loss)


def _reference_loss(loss: WindowLoss | None, prev_loss: WindowLoss | None) -> float | None:
    if prev_loss is not None and math.isfinite(prev_loss.mean):
        return prev_loss.mean
    if loss is not None and math.isfinite(loss.first):
        return loss.first
    return None


RULES: dict[str, Callable[..., Rule]] = {"paper": PaperRule, "robust": RobustRule}


def make_rule(rule: str | Rule, **options: float) -> Rule:
    """A rule object from a registered name (``options`` go to its constructor) or the object itself."""
    if isinstance(rule, str):
        if rule not in RULES:
            close = difflib.get_close_matches(rule.lower(), list(RULES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"rule must be one of {sorted(RULES)} or a Rule object, got {rule!r}{hint}")
        return RULES[rule](**options)
    if isinstance(rule, type):
        raise TypeError(f"rule: got the class {rule.__name__}; pass an instance, e.g. rule={rule.__name__}()")
    if not isinstance(rule, Rule):
        raise TypeError(
            f"rule must be a rule name or an object with name, uses_loss and decide(stats, state), "
            f"got {type(rule).__name__}"
        )
    if options:
        raise ValueError(
            f"TLR's {' and '.join(sorted(options))} configure{'s' if len(options) == 1 else ''} a rule "
            f"given by name; with a rule object ({type(rule).__name__}) set "
            f"{'it' if len(options) == 1 else 'them'} on the object instead, "
            f"e.g. rule={type(rule).__name__}({sorted(options)[0]}=...)"
        )
    return rule


def fresh_rule_state(rule: Rule) -> Any:
    """A param group's fresh state for ``rule``: its ``init()``, or an empty dict."""
    init = getattr(rule, "init", None)
    return init() if callable(init) else {}


def rule_state_pairs(state: Any) -> list[list[Any]]:
    """A rule state as ``[key, value]`` pairs (what a state dict holds): a copy, in field order."""
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return [[f.name, getattr(state, f.name)] for f in dataclasses.fields(state)]
    return [[key, value] for key, value in dict(state).items()]


def foreign_rule_state(rule: Rule, pairs: Any) -> bool:
    """Whether a state dict's rule-state pairs were written by another rule: they name fields and none is
    a field of ``rule``'s state (a rule whose state is not a dataclass knows no field)."""
    saved = {str(key) for key in dict(pairs)}
    state = fresh_rule_state(rule)
    known = (
        {f.name for f in dataclasses.fields(state)}
        if dataclasses.is_dataclass(state) and not isinstance(state, type)
        else set()
    )
    return bool(saved) and not saved & known


def rule_state_from_pairs(rule: Rule, pairs: Any) -> Any:
    """The state ``rule`` keeps, read back from a state dict's pairs (or a dict, as older checkpoints
    hold): each known field converted to its declared type (older checkpoints wrote floats for flags and
    counters); unknown keys are dropped, missing ones keep their fresh value."""
    saved = dict(pairs)
    state = fresh_rule_state(rule)
    if not (dataclasses.is_dataclass(state) and not isinstance(state, type)):
        return {str(key): value for key, value in saved.items()}
    for f in dataclasses.fields(state):
        if f.name in saved:
            kind = type(getattr(state, f.name))
            setattr(state, f.name, kind(saved[f.name]))
    return state
