"""Rate rules: the paper's exactly, the robust rule's decisions one by one, and TLR carrying them out."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import random
from collections.abc import Callable

import pytest
import torch

from benchmark_scripts import load_benchmark
from ntlr import TLR, PaperRule, RobustRule, RobustState, Status, WindowStats, make_rule, newton_factor
from ntlr.functional import WindowLoss
from ntlr.rules import Decision, loss_unchanged, momentum_horizon, momentum_warmup


def _stats(a: float = 0.5, b: float = 1.0, c: float = 1.0, *, window: int = 3, **kwargs) -> WindowStats:
    return WindowStats(a=a, b=b, c=c, lr=0.1, window=window, steps=10, **kwargs)


def _loss(mean: float, se2: float = 1e-6, first: float = math.nan) -> WindowLoss:
    return WindowLoss(mean, se2, first, se2)


# -- the paper's rule --------------------------------------------------------------------------------------
def test_paper_rule_is_newton_factor() -> None:
    rng = random.Random(0)
    rule = PaperRule(gamma=0.4, max_factor=50.0)
    for _ in range(500):
        a, b = rng.uniform(-3, 3), rng.uniform(0, 3)
        window = rng.choice([0, 1, 5])
        got = rule.decide(_stats(a, b, window=window), {})
        assert got == newton_factor(a, b, gamma=0.4, max_factor=50.0, first_window=window == 0)


# -- the robust rule, decision by decision -----------------------------------------------------------------
def test_robust_rolls_back_nonfinite_windows_whatever_the_count() -> None:
    rule, state = RobustRule(), RobustState()
    for _ in range(5):  # never limited by max_rollbacks: there is nothing to continue from
        decision = rule.decide(_stats(a=math.nan), state)
        assert decision.rollback and decision.status == Status.ROLLBACK
        assert decision.factor == rule.rollback_factor
    assert rule.decide(_stats(loss=_loss(math.inf), prev_loss=_loss(1.0)), RobustState()).rollback


def test_robust_rolls_back_a_loss_jump_at_most_max_rollbacks_times_in_a_row() -> None:
    rule, state = RobustRule(max_rollbacks=2), RobustState()
    jump = _stats(loss=_loss(2.0), prev_loss=_loss(1.0))
    assert rule.decide(jump, state).rollback
    assert rule.decide(jump, state).rollback
    third = rule.decide(jump, state)  # the rise is not the rate's doing: keep the window, lower the rate
    assert not third.rollback and third.factor == pytest.approx(1 - rule.gamma)
    assert rule.decide(jump, state).rollback  # the count restarted


def test_a_rollback_right_after_a_climb_lands_at_most_halfway_back() -> None:
    rule = RobustRule()
    jump = _stats(loss=_loss(2.0), prev_loss=_loss(1.0))
    # The last decision climbed x100 from a kept window: the rollback lands at 10x that window's rate.
    climbed = RobustState(last_factor=100.0)
    decision = rule.decide(jump, climbed)
    assert decision.rollback and decision.factor == pytest.approx(0.1)
    # A small climb: the rollback's own cut is deeper than halfway back, and stands.
    assert rule.decide(jump, RobustState(last_factor=1.2)).factor == rule.rollback_factor
    # No climb before it, or no kept window yet (b = 0: the reach test's cut): the rollback_factor.
    assert rule.decide(jump, RobustState(last_factor=1.0)).factor == rule.rollback_factor
    first = _stats(a=0.0, b=0.0, window=1, loss=_loss(2.0), prev_loss=_loss(1.0))
    assert rule.decide(first, RobustState(last_factor=100.0)).factor == rule.rollback_factor
    # A window gone non-finite right after the climb lands halfway back too (its ceiling aside).
    nonfinite = rule.decide(_stats(a=math.nan), RobustState(last_factor=100.0))
    assert nonfinite.rollback and nonfinite.factor == pytest.approx(0.1)
    assert rule.decide(_stats(a=math.nan), RobustState(last_factor=1.0)).factor == rule.rollback_factor


def test_with_a_budget_on_a_trusted_floor_the_first_rollback_cuts_gently_and_a_repeat_cuts_deep() -> None:
    rule = RobustRule()
    jump = _stats(a=-0.2, loss=_loss(2.0), prev_loss=_loss(1.0), annealed=True)

    def floor(steady: int) -> RobustState:
        return RobustState(settled=True, steady_windows=steady, alignment=math.log(0.9))

    trusted = floor(round(1 / rule.pool) + 1)
    first = rule.decide(jump, trusted)
    assert first.rollback and first.factor == pytest.approx(rule.floor_rollback_factor)
    second = rule.decide(jump, trusted)  # the rise repeated: the rate was wrong after all
    assert second.rollback and second.factor == rule.rollback_factor
    # Without a budget, before the floor is trusted, not settled, or right after a climb: item 1's cuts.
    plain = dataclasses.replace(jump, annealed=False)
    assert rule.decide(plain, floor(10)).factor == rule.rollback_factor
    assert rule.decide(jump, floor(round(1 / rule.pool))).factor == rule.rollback_factor
    assert rule.decide(jump, RobustState(steady_windows=10)).factor == rule.rollback_factor
    climbed = dataclasses.replace(floor(10), last_factor=100.0)
    assert rule.decide(jump, climbed).factor == pytest.approx(0.1)
    # A blow-up on a floor keeps its own cut (7).
    blowup = _stats(a=-0.2, c=rule.blowup_ratio * 2, loss=_loss(2.0), prev_loss=_loss(1.0), annealed=True)
    assert rule.decide(blowup, floor(10)).factor < rule.floor_rollback_factor
    # The gentle cut is the user's to set, and checked by name.
    assert RobustRule(floor_rollback_factor=0.3).decide(jump, floor(10)).factor == 0.3
    with pytest.raises(ValueError, match="floor_rollback_factor"):
        RobustRule(floor_rollback_factor=1.5)


def test_robust_first_window_compares_with_the_first_loss() -> None:
    rule = RobustRule()
    risen = _stats(a=0.0, b=0.0, window=0, loss=_loss(3.7, first=2.36))
    assert rule.decide(risen, RobustState()).rollback
    # One loss has no noise estimate: short of a rise by half (or a climb through the window) it stands.
    higher = _stats(a=0.0, b=0.0, window=0, loss=_loss(3.2, first=2.36))
    assert not rule.decide(higher, RobustState()).rollback
    falling = _stats(a=0.0, b=0.0, window=0, loss=_loss(1.5, first=2.36))
    decision = rule.decide(falling, RobustState())
    assert not decision.rollback and decision.status == Status.FIRST_WINDOW and decision.factor == 1.0


def _window(losses: list[float]) -> WindowLoss:
    n = len(losses)
    sq_diff = sum((y - x) ** 2 for x, y in itertools.pairwise(losses))
    weighted = sum(i * x for i, x in enumerate(losses))
    loss = WindowLoss.from_sums(sum(losses), sum(x * x for x in losses), n, losses[0], sq_diff, weighted)
    assert loss is not None
    return loss


def test_window_loss_trend_is_the_least_squares_slope() -> None:
    loss = _window([1.0, 1.5, 2.0, 2.5])
    assert loss.trend == pytest.approx(0.5) and loss.mean == pytest.approx(1.75)
    assert loss.trend_variance == pytest.approx((0.25 / 2) / 5.0)  # σ² from the differences / Σ(i-ī)²


def test_robust_rolls_back_a_window_whose_loss_climbed_through_it() -> None:
    """digits, SGD momentum 0.9 from α0 = 1: the loss falls, then climbs within the first window. Its
    sample variance is large (the climb), its successive differences are not: the climb is no noise."""
    losses = [2.36, 1.86, 1.63, 0.85, 0.86, 2.66, 3.49, 5.83, 7.58, 10.21]
    loss = _window(losses)
    assert loss.mssd_variance < loss.variance
    assert RobustRule().decide(_stats(window=0, loss=loss), RobustState()).rollback
    falling = _window(losses[::-1])
    assert not RobustRule().decide(_stats(window=0, loss=falling), RobustState()).rollback


def test_robust_takes_the_undamped_newton_step_down() -> None:
    a, b = -1.0, 1.0
    decision = RobustRule().decide(_stats(a, b), RobustState())
    assert decision.factor == pytest.approx(b / (b - a)) and decision.status == Status.UPDATED
    floor = RobustRule(max_factor=10.0).decide(_stats(-1e6, 1.0), RobustState())
    assert floor.factor == pytest.approx(0.1)


def test_robust_newton_step_up_is_the_secants_while_searching_damped_once_settled() -> None:
    rule = RobustRule(gamma=0.5, search_max_factor=2.0, max_factor=100.0, settled_max_factor=2.0)
    state = rule.init()
    up = rule.decide(_stats(0.5, 1.0), state)
    assert up.factor == pytest.approx(2.0) and up.status == Status.UPDATED  # b / (b - a): the secant's
    assert rule.decide(_stats(0.25, 1.0), rule.init()).factor == pytest.approx(4 / 3)  # not gamma's 7/6
    # Past search_max_factor the damped step, where it is larger (the secant's 4 is not trusted).
    assert rule.decide(_stats(0.75, 1.0), rule.init()).factor == pytest.approx(2.5)
    assert RobustRule().decide(_stats(0.75, 1.0), RobustState()).factor == pytest.approx(2.0)
    assert rule.decide(_stats(0.999, 1.0), state).factor == 100.0  # capped while climbing
    rule.decide(_stats(-1.0, 1.0), state)  # a decrease: the rate has been found once
    assert rule.decide(_stats(0.2, 1.0), state).factor == pytest.approx(1 + 0.5 * 0.2 / 0.8)  # gamma's
    assert rule.decide(_stats(0.999, 1.0), state).factor == 2.0
    damped = RobustRule(gamma=0.5, search_max_factor=1.0)  # the paper's damping while searching too
    assert damped.decide(_stats(0.5, 1.0), damped.init()).factor == pytest.approx(1.5)
    # Windows shorter than search_window (the secant of a few gradient differences) take gamma's step.
    short = dataclasses.replace(_stats(0.5, 1.0), steps=9)
    assert rule.decide(short, rule.init()).factor == pytest.approx(1.5)
    assert RobustRule(gamma=0.5, search_window=9).decide(short, RobustState()).factor == pytest.approx(2.0)


def test_robust_rising_loss_vetoes_an_increase() -> None:
    rule = RobustRule()
    rising = _stats(0.5, 1.0, loss=_loss(1.05, 1e-4), prev_loss=_loss(1.0, 1e-4))  # +5%: below rollback
    decision = rule.decide(rising, RobustState())
    assert decision.factor == 1.0 and decision.status == Status.LOSS_GUARD and not decision.rollback
    noisy = _stats(0.5, 1.0, loss=_loss(1.05, 1.0), prev_loss=_loss(1.0, 1.0))  # within the noise
    assert rule.decide(noisy, RobustState()).factor > 1.0


def test_robust_nonpositive_denominator_reads_the_loss() -> None:
    rule = RobustRule()
    fell = {"loss": _loss(0.9), "prev_loss": _loss(1.0)}
    steady = rule.decide(_stats(1.01, 1.0, 1.02, **fell), RobustState())
    assert steady.factor == rule.max_factor  # windows alike and the loss falls: the rate is far too small
    level = {"loss": _loss(1.0, 1.0), "prev_loss": _loss(1.0, 1.0)}
    flat = rule.decide(_stats(1.01, 1.0, 1.02, **level), RobustState())
    assert flat.factor == rule.max_factor  # ... or does not rise: the step is too small to show
    growing = rule.decide(_stats(1.5, 1.0, 3.0, **fell), RobustState())
    assert growing.factor == pytest.approx(1 + rule.gamma)
    rose = rule.decide(_stats(1.01, 1.0, 1.02, loss=_loss(1.05), prev_loss=_loss(1.0)), RobustState())
    assert rose.factor == pytest.approx(1 - rule.gamma)
    blind = rule.decide(_stats(1.01, 1.0, 1.02), RobustState())  # no loss observed: the paper's choice
    assert blind.factor == 1.0 and blind.status == Status.NONPOSITIVE_DENOMINATOR


@pytest.mark.parametrize(
    ("momentum", "dampening", "nesterov", "steps"),
    [
        (0.9, 0.0, False, 10),
        (0.8, 0.0, False, 5),
        (0.9, 0.0, True, 10),
        (0.9, 0.5, False, 10),
        (0.99, 0.0, False, 30),
    ],
)
def test_momentum_warmup_is_what_sgd_gives_a_constant_gradient(
    momentum: float, dampening: float, nesterov: bool, steps: int
) -> None:
    from ntlr.rules import momentum_warmup

    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1e-3, momentum=momentum, dampening=dampening, nesterov=nesterov)
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    start = w.detach().clone()
    ends = []
    for t in range(2 * steps):
        opt.zero_grad()
        (w * g).sum().backward()  # a linear loss: the same gradient at every step
        opt.step()
        if (t + 1) % steps == 0:
            ends.append(w.detach().clone())
    first, second = ends[0] - start, ends[1] - ends[0]
    measured = (second @ second / (first @ first)).item()
    assert momentum_warmup(momentum, steps, dampening=dampening, nesterov=nesterov) == pytest.approx(measured)
    assert momentum_warmup(0.0, steps) == 1.0


def test_robust_holds_the_rate_on_a_loss_no_step_changes() -> None:
    """Item 4: aligned windows (b - a <= 0) on a level loss climb x max_factor (steps too small to show), but
    not where every loss equals the last window's exactly (a constant loss, a dead network, weights moved by
    decoupled weight decay alone): nothing says the rate is too small there."""
    rule = RobustRule()
    aligned = {"a": 1.0, "b": 1.0, "c": 1.0}
    for value in (1.0, 0.0):
        flat = _loss(value, 0.0, first=value)
        held = rule.decide(_stats(**aligned, loss=flat, prev_loss=flat), rule.init())
        assert held.factor == 1.0 and held.status == Status.NONPOSITIVE_DENOMINATOR
        one = WindowLoss(value, math.inf, value)  # K = 1: one loss a window, equal to the last one
        assert rule.decide(_stats(**aligned, loss=one, prev_loss=one), rule.init()).factor == 1.0
        # Decay's windows with a / b just below 1 (b - a > 0): the Newton step does not climb either.
        decayed = rule.decide(_stats(a=0.99, b=1.0, c=0.98, loss=flat, prev_loss=flat), rule.init())
        assert decayed.factor == 1.0 and decayed.status == Status.UPDATED
    # Level within its noise, or level but for a rise: not flat, the climb stands.
    noisy = _loss(1.0, 1e-4, first=1.0)
    level = rule.decide(_stats(**aligned, loss=noisy, prev_loss=noisy), rule.init())
    assert level.factor == rule.max_factor and level.status == Status.CAPPED
    fell = _stats(**aligned, loss=_loss(1.0, 0.0), prev_loss=_loss(1.0 + 1e-7, 0.0))
    assert rule.decide(fell, rule.init()).factor == rule.max_factor


def test_robust_climbs_where_steps_are_below_the_losss_resolution() -> None:
    """A loss that did not change at all although the gradients were nonzero (``loss_unresolved``): the
    steps are too small for the loss's float resolution, and the aligned windows climb (4) instead of the
    flat loss's hold."""
    rule = RobustRule()
    flat = _loss(24.0, 0.0, first=24.0)
    aligned = {"a": 1.0, "b": 1.0, "c": 1.0, "loss": flat, "prev_loss": flat}
    assert rule.decide(_stats(**aligned), rule.init()).factor == 1.0
    climbed = rule.decide(_stats(**aligned, loss_unresolved=True), rule.init())
    assert climbed.factor == rule.max_factor and climbed.status == Status.CAPPED
    assert loss_unchanged(flat, flat) and not loss_unchanged(flat, _loss(24.5, 0.0))
    assert not loss_unchanged(None, flat) and not loss_unchanged(_loss(24.0, 1e-6, first=24.0), flat)


@pytest.mark.parametrize(("inner", "lr"), [("Adam", 1e-9), ("SGD", 1e-10), ("LBFGS", 1e-10)])
def test_tlr_climbs_from_steps_too_small_to_change_the_loss(inner: str, lr: float) -> None:
    """Full-batch least squares with a loss of about 24 (float32 resolution 2e-6): from these rates the
    weights move but the loss does not change in its last bit. The flat loss's hold alone kept Adam's rate
    for 20 windows and SGD's and L-BFGS's for the whole run; the nonzero gradients tell TLR to climb."""
    torch.manual_seed(0)
    x = torch.randn(256, 20)
    y = x @ torch.randn(20, 1) + 0.1 * torch.randn(256, 1)
    model = torch.nn.Linear(20, 1)
    opt = TLR(getattr(torch.optim, inner)(model.parameters(), lr=lr), update_every=5)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    initial = closure().item()
    for _ in range(60 if inner == "LBFGS" else 300):
        opt.step(closure)
    assert opt.get_lr()[0] > 1e-3
    assert closure().item() < 0.01 * initial


def test_tlr_holds_the_rate_where_lbfgs_stops_at_its_tolerance() -> None:
    """L-BFGS at the optimum returns without a step (its gradient and change tolerances): the weights stand
    still with finite, nonzero gradients, but a step of the rate along them would have registered, so
    the rate is no reason; it climbed x100 a window to 1e20 before."""
    torch.manual_seed(0)
    x = torch.randn(256, 20)
    y = x @ torch.randn(20, 1) + 0.1 * torch.randn(256, 1)
    model = torch.nn.Linear(20, 1)
    opt = TLR(torch.optim.LBFGS(model.parameters(), lr=1.0), update_every=5)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(60):
        opt.step(closure)
    still = [record for record in opt.history if record.b == 0.0 and record.c == 0.0]
    assert len(still) > 5  # converged within the first windows
    assert opt.get_lr()[0] <= 10.0


def test_robust_measures_a_rise_against_the_span_the_loss_fell_through() -> None:
    """Item 16: the size a rise is measured against is |loss|, but at most loss_span times the span the loss
    has fallen through since its first window, so a constant added to the loss does not hide a jump."""
    rule = RobustRule()
    assert rule.loss_size(10.5, RobustState()) == 10.5  # no span yet
    spanned = RobustState(first_loss=12.3, lowest=10.5, noise=1e-4)  # windows' standard error 0.01
    assert rule.loss_size(10.5, spanned) == pytest.approx(rule.loss_span * 1.8)
    assert rule.loss_size(0.4, RobustState(first_loss=2.3, lowest=0.4, noise=1e-4)) == 0.4  # fell by a lot
    assert RobustRule(loss_span=math.inf).loss_size(10.5, spanned) == 10.5
    # A span within span_z standard errors is noise (a floor from the start): the loss's size, as before.
    assert rule.loss_size(10.5, RobustState(first_loss=10.55, lowest=10.5, noise=1e-4)) == 10.5
    assert rule.loss_size(10.5, RobustState(first_loss=12.3, lowest=10.5)) == 10.5  # no noise pooled yet
    # A rise of 0.8 nats on a loss of 10.5 (an offset of 10): significant, 8 % of the loss, 44 % of its span.
    stats = _stats(a=0.5, b=1.0, c=1.0, loss=_loss(11.3, 1e-4), prev_loss=_loss(10.5, 1e-4))
    settled = dataclasses.replace(spanned, settled=True)
    assert rule.decide(stats, settled).rollback
    assert (
        not RobustRule(loss_span=math.inf).decide(stats, dataclasses.replace(spanned, settled=True)).rollback
    )


@pytest.mark.parametrize("loss_span", [3.0, math.inf])
def test_tlr_trains_a_loss_with_a_constant_added(loss_span: float) -> None:
    """The digits MLP around SGD m0.9 from 1e-3 with 10 added to its cross-entropy: measured against the
    loss's size alone, no rise counted and the network ended at chance (2.31; 0.045 without the offset)."""
    final, _ = load_benchmark("protocol_probes").digits_mlp_run(
        1e-3, RobustRule(loss_span=loss_span), offset=10.0
    )
    if math.isfinite(loss_span):
        assert final < 0.2
    else:
        assert final > 1.0  # the failure, kept measured: without the span the offset hides every rise


def test_tlr_climbs_out_of_rates_whose_steps_round_away() -> None:
    """The digits MLP from 1e-9 (seed 1): most steps are below the float32 weights' resolution, so the
    per-rate directions grow 49-fold once the rate climbs x100 and the steps register. Read as a blow-up
    (the loss steady), the window was rolled back, the search settled at 1e-8 and its runaway cap held the
    rate at 8.5e-8 for the whole run: the network stayed at chance (2.31)."""
    final, opt = load_benchmark("protocol_probes").digits_mlp_run(1e-9, RobustRule(), seed=1)
    assert Status.ROLLBACK not in [record.status for record in opt.history[:4]]
    assert opt.get_lr()[0] > 1e-3
    assert final < 0.2


def test_tlr_reads_no_gradients_for_a_rule_that_does_not_use_the_stall_flags(monkeypatch) -> None:
    """The paper's rule collapses its rate until the weights stand still (b = c = 0 at every meta-step);
    it reads neither ``stalled`` nor ``loss_unresolved`` (``uses_stalled = False``), so TLR skips their
    gradient reads there; the default rule still gets them."""
    calls = []
    monkeypatch.setattr(TLR, "_moving_gradients", lambda self, window: calls.append(1) or True)
    for rule, expected in (("paper", False), ("robust", True)):
        calls.clear()
        param = torch.nn.Parameter(torch.ones(3))
        opt = TLR(torch.optim.SGD([param], lr=1e-12), update_every=2, rule=rule)
        for _ in range(6):
            opt.zero_grad()
            loss = (param * 1e-3).sum()
            loss.backward()
            opt.step(lambda loss=loss: loss)
        assert all(record.c == 0.0 for record in opt.history)
        assert bool(calls) is expected


def test_tlr_warns_that_rprop_reads_its_rate_once() -> None:
    model = torch.nn.Linear(3, 1)
    with pytest.warns(RuntimeWarning, match="Rprop reads lr only at its first step"):
        TLR(torch.optim.Rprop(model.parameters(), lr=0.01), update_every=5)


@pytest.mark.parametrize(("lr", "weight_decay"), [(1e-5, 1e-2), (1e-3, 1e-2), (1e-2, 0.1)])
def test_tlr_around_adamw_with_zero_gradients_keeps_the_rate(lr: float, weight_decay: float) -> None:
    """Zero gradients and a constant loss: AdamW's weights move by the decoupled decay alone, and TLR keeps
    the rate, so they follow the bare optimizer's (at 1e-3 the decay's windows, a / b = 0.994, once drew a
    x2500 climb through the Newton step)."""
    torch.manual_seed(0)
    param = torch.randn(5, 1, requires_grad=True)
    twin = param.detach().clone().requires_grad_(True)
    opt = TLR(torch.optim.AdamW([param], lr=lr, weight_decay=weight_decay), update_every=3)
    bare = torch.optim.AdamW([twin], lr=lr, weight_decay=weight_decay)
    for _ in range(30):
        param.grad, twin.grad = torch.zeros_like(param), torch.zeros_like(twin)
        opt.step(lambda: torch.tensor([1.0]))
        bare.step()
    assert opt.group_meta[0].factor == 1.0
    torch.testing.assert_close(param.detach(), twin.detach())


def test_robust_allows_for_momentums_warmup_in_the_second_window() -> None:
    # The second window of SGD m0.9 from a tiny rate: aligned, 3.7x longer in squared length, loss level.
    rule = RobustRule()
    level = {"loss": _loss(2.3, 1.0), "prev_loss": _loss(2.3, 1.0)}
    ramp = {"a": 1.92, "b": 1.0, "c": 3.69, "lr": 1e-6, "window": 1, "steps": 10, "momentum": 0.9, **level}
    assert rule.decide(WindowStats(**ramp), rule.init()).factor == pytest.approx(1 + rule.gamma)
    allowed = rule.decide(WindowStats(**ramp, warmup=3.7), RobustState(old_fresh=True))
    assert allowed.factor == rule.max_factor and allowed.status == Status.CAPPED
    # Only after a window that started from empty moments; growth beyond twice the ramp is still growth.
    later = rule.decide(WindowStats(**ramp, warmup=3.7), RobustState(old_fresh=False))
    assert later.factor == pytest.approx(1 + rule.gamma)
    beyond = WindowStats(**{**ramp, "a": 3.0, "c": 9.0}, warmup=3.7)
    assert rule.decide(beyond, RobustState(old_fresh=True)).factor == pytest.approx(1 + rule.gamma)


def test_robust_knows_which_windows_started_from_empty_moments() -> None:
    # The first window and each after a rollback (TLR clears the first moments there).
    rule, state = RobustRule(), RobustRule().init()
    kept = WindowStats(a=0.5, b=1.0, c=1.0, lr=0.1, window=1, steps=10)
    assert state.fresh_start and not state.old_fresh
    rule.decide(WindowStats(a=0.0, b=0.0, c=1.0, lr=0.1, window=0, steps=10), state)  # the first, kept
    assert state.old_fresh and not state.fresh_start
    rule.decide(kept, state)
    assert not state.old_fresh and not state.fresh_start
    rule.decide(dataclasses.replace(kept, a=math.nan), state)  # rolled back: the next starts fresh
    assert state.fresh_start and not state.old_fresh
    rule.decide(kept, state)
    assert state.old_fresh and not state.fresh_start


@pytest.mark.parametrize(
    ("group", "horizon"),
    [
        ({"momentum": 0.9}, 10),
        ({"momentum": 0.8}, 5),
        ({"momentum": 0.0}, 1),
        ({"betas": (0.9, 0.999)}, 10),
        ({"betas": (torch.tensor(0.95), 0.999)}, 20),
        ({}, 1),
    ],
)
def test_momentum_horizon(group: dict, horizon: int) -> None:
    assert momentum_horizon(group) == horizon
    assert RobustRule().window_length(3, group) == max(3, horizon)
    assert RobustRule().window_length(50, group) == 50
    # Opt-in: odd (an even window sums a period-two oscillation away).
    expected = max(3, horizon)
    assert RobustRule(odd_windows=True).window_length(3, group) == expected + (expected % 2 == 0)
    assert RobustRule(odd_windows=True).window_length(50, group) == 51
    assert RobustRule(odd_windows=True).window_length(1, {}) == 1


def test_robust_rolls_back_a_blowup_without_a_loss_and_sets_a_ceiling() -> None:
    rule, state = RobustRule(), RobustState()
    # The direction's norm grew 100-fold over a 10-step window: ρ = 100 ** (1 / 10) per step.
    blown = WindowStats(a=-5.0, b=1.0, c=1e4, lr=0.1, window=3, steps=10)
    rho = 100**0.1
    decision = rule.decide(blown, state)
    assert decision.rollback and decision.status == Status.ROLLBACK
    assert decision.factor == pytest.approx(1 / (1 + rho))
    assert state.ceiling == pytest.approx(0.9 * 2 * 0.1 / (1 + rho))
    # The next window, at the lowered rate, starts where the blow-up was: it is not read as one again.
    again = WindowStats(a=-5.0, b=1.0, c=1e4, lr=0.1 * decision.factor, window=4, steps=10)
    assert not rule.decide(again, state).rollback
    # Aligned windows afterwards climb, but not past the ceiling (and the ceiling never cuts the rate).
    lr = 0.1 / (1 + rho)
    up = rule.decide(WindowStats(a=0.999, b=1.0, c=1.0, lr=lr, window=5, steps=10), state)
    assert up.status == Status.CAPPED and lr * up.factor == pytest.approx(state.ceiling)
    above = rule.decide(WindowStats(a=0.999, b=1.0, c=1.0, lr=1.0, window=6, steps=10), state)
    assert above.factor == 1.0


def test_robust_reads_a_growing_direction_under_a_falling_loss_as_progress() -> None:
    rule, state = RobustRule(), RobustState()
    falling = _stats(0.5, 1.0, 1e4, loss=_loss(0.5), prev_loss=_loss(1.0))
    decision = rule.decide(falling, state)
    assert not decision.rollback and state.ceiling == math.inf
    # With the loss jumping too, the blow-up's growth sets the cut (below rollback_factor) and a ceiling.
    jumped = _stats(-50.0, 1.0, 1e8, loss=_loss(2.0), prev_loss=_loss(1.0))  # ρ = 10 ** 0.4 a step
    decision = rule.decide(jumped, state)
    assert decision.rollback and decision.factor < rule.rollback_factor and state.ceiling < math.inf


def test_robust_reads_a_growing_direction_under_a_steady_loss_as_no_blowup_yet() -> None:
    """Climbing out of rates whose steps float32 rounds away, the directions read per unit rate grow as the
    steps start to register (49-fold from 1e-9 on the digits MLP, the loss within its noise): read as a
    blow-up, it rolled the search back and settled it at 1e-8. Under a loss that rose beyond its noise the
    same growth is one."""
    rule = RobustRule()
    steady = _stats(1.28, 1.0, 49.0, loss=_loss(2.3161, 1e-4), prev_loss=_loss(2.3155, 1e-4))
    state = rule.init()
    decision = rule.decide(steady, state)
    assert not decision.rollback and state.ceiling == math.inf
    rose = _stats(1.28, 1.0, 49.0, loss=_loss(2.40, 1e-4), prev_loss=_loss(2.3155, 1e-4))
    assert rule.decide(rose, rule.init()).rollback
    # Over a window shorter than search_window the one or two successive differences cannot tell a loss
    # exploding within the window from noise: the growth alone decides, as before (torch's ASGD at K = 2
    # went from 149 to 1.9e7 when it did not).
    losses = {"loss": _loss(2.3161, 1e-4), "prev_loss": _loss(2.3155, 1e-4)}
    short = WindowStats(a=1.28, b=1.0, c=49.0, lr=0.1, window=3, steps=2, **losses)
    assert rule.decide(short, rule.init()).rollback


def test_robust_search_reads_a_step_down_too_small_to_show_as_a_climb() -> None:
    """Until settled, a Newton step down on a steady window that moved the weights by less than
    ``search_reach`` of their norm is float32's rounding, not curvature: the rate climbs by max_factor.
    Not once the window reached further, nor under a rise, nor once settled, nor with the test off."""
    losses = {"loss": _loss(2.3030, 1e-4), "prev_loss": _loss(2.3031, 1e-4)}

    def window(weights_sq: float, **kwargs) -> WindowStats:
        fields = {"a": -0.02, "b": 1.0, "c": 1.0, "lr": 1e-9, "window": 3, "steps": 10, **losses, **kwargs}
        return WindowStats(weights_sq=weights_sq, **fields)

    rule = RobustRule()
    assert rule.reach(window(1.0)) == pytest.approx(1e-9)
    decision = rule.decide(window(1.0), rule.init())
    assert decision.status == Status.CAPPED and decision.factor == rule.max_factor
    assert rule.decide(window(1e-8), rule.init()).factor < 1.0  # reach 1e-5: the step down stands
    assert rule.decide(window(math.nan), rule.init()).factor < 1.0  # no norm asked for: as before
    assert RobustRule(search_reach=0.0).decide(window(1.0), rule.init()).factor < 1.0
    rose = window(1.0, loss=_loss(2.40, 1e-4))
    assert rule.decide(rose, rule.init()).factor < rule.max_factor
    settled = dataclasses.replace(rule.init(), settled=True, settled_rate=1e-9)
    assert rule.decide(window(1.0), settled).factor < rule.max_factor
    # TLR sums <w, w> in every window while searching, for this test only where it is on.
    assert rule.uses_weight_norm(True, rule.init())
    assert not RobustRule(search_reach=0.0).uses_weight_norm(True, rule.init())


@pytest.mark.parametrize("search_reach", [1e-6, 0.0])
def test_tlr_climbs_out_of_a_first_window_whose_direction_is_rounding(search_reach: float) -> None:
    """Adagrad on the digits MLP from 1e-11 (seed 2): its first steps are below the float32 weights'
    spacing, the first window's direction is rounding (a / b = -0.02), and the undamped step down it asked
    for settled the search at 2.8e-5: the run ended at chance (2.3)."""
    final, _ = load_benchmark("protocol_probes").digits_mlp_run(
        1e-11, RobustRule(search_reach=search_reach), seed=2, inner="Adagrad"
    )
    if search_reach > 0.0:
        assert final < 1.0
    else:
        assert final > 2.0  # the failure, kept measured


def test_robust_ceiling_after_a_nonfinite_window() -> None:
    rule, state = RobustRule(), RobustState()
    assert rule.decide(WindowStats(a=math.inf, b=1.0, c=math.inf, lr=2.0, window=1, steps=3), state).rollback
    assert state.ceiling == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": 0.0}, "gamma"),
        ({"search_max_factor": 0.5}, "search_max_factor"),
        ({"search_max_factor": math.nan}, "search_max_factor"),
        ({"max_factor": 0.5}, "max_factor"),
        ({"rollback_factor": 1.5}, "rollback_factor"),
        ({"rollback_rise": -1.0}, "rollback_rise"),
        ({"z": math.nan}, "z"),
        ({"blowup_ratio": 1.0}, "blowup_ratio"),
        ({"blowup_ratio": math.nan}, "blowup_ratio"),
        ({"odd_windows": 1}, "odd_windows"),
        ({"search_reach": -1.0}, "search_reach"),
        ({"search_reach": math.inf}, "search_reach"),
        ({"band_z": -0.5}, "band_z"),
        ({"band_z": math.nan}, "band_z"),
        ({"band_z": True}, "band_z"),
        ({"blind_growth": 0.9}, "blind_growth"),
        ({"blind_growth": math.nan}, "blind_growth"),
        ({"blind_growth": True}, "blind_growth"),
    ],
)
def test_robust_rule_validates(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RobustRule(**kwargs)


def test_make_rule() -> None:
    assert isinstance(make_rule("paper"), PaperRule)
    assert make_rule("robust", gamma=0.5).gamma == 0.5
    rule = RobustRule()
    assert make_rule(rule) is rule
    with pytest.raises(ValueError, match="rule must be one of"):
        make_rule("newton")
    with pytest.raises(ValueError, match="gamma"):
        make_rule(rule, gamma=0.5)
    with pytest.raises(TypeError, match="rule must be"):
        make_rule(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="did you mean 'paper'"):
        make_rule("Paper")
    # The class where an instance belongs would fail only at the first meta-step, deep inside TLR.
    with pytest.raises(TypeError, match=r"pass an instance, e.g. rule=PaperRule\(\)"):
        make_rule(PaperRule)  # type: ignore[arg-type]


# -- TLR carrying a rule out -------------------------------------------------------------------------------
class _Rollback:
    """A rule that rolls back its second window."""

    name = "rollback_second"
    uses_loss = False

    def decide(self, stats, state):
        from ntlr import MetaStepDecision

        if stats.window == 1:
            return MetaStepDecision(0.5, Status.ROLLBACK, rollback=True)
        return MetaStepDecision(1.0, Status.FIRST_WINDOW if stats.window == 0 else Status.UPDATED)


@pytest.mark.parametrize("foreach", [False, True])
def test_rollback_restores_the_window_start_and_clears_momentum(foreach: bool) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = TLR(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        update_every=4,
        rule=_Rollback(),
        foreach=foreach,
    )
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    start_of_second = None
    for step in range(8):
        if step == 4:
            start_of_second = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    assert [r.status for r in opt.history] == ["first_window", "rollback"]
    for p, start in zip(model.parameters(), start_of_second):
        assert torch.equal(p.detach(), start)
        assert torch.count_nonzero(opt.state[p]["momentum_buffer"]) == 0
    assert opt.get_lr() == [pytest.approx(0.05)]


def _diverging_run(rule: str, steps: int = 120) -> tuple[float, TLR]:
    """SGD with momentum 0.9 from a rate 20× past the stability limit of an ill-conditioned quadratic."""
    torch.manual_seed(0)
    scales = torch.logspace(0, -1, 8)
    w = torch.nn.Parameter(torch.ones(8))
    opt = TLR(torch.optim.SGD([w], lr=4.0, momentum=0.9), update_every=10, rule=rule)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.5 * (scales * w * w).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        for _ in range(steps):
            with torch.enable_grad():
                opt.step(closure)
        final = float(0.5 * (scales * w * w).sum())
    return final, opt


def test_robust_rule_recovers_where_the_paper_rule_diverges() -> None:
    initial = 0.5 * float(torch.logspace(0, -1, 8).sum())
    paper, _ = _diverging_run("paper")
    robust, opt = _diverging_run("robust")
    assert not (math.isfinite(paper) and paper < initial)
    assert math.isfinite(robust) and robust < 0.5 * initial
    assert any(r.status == "rollback" for r in opt.history)


def test_robust_rule_state_round_trips_through_state_dict() -> None:
    def make() -> tuple[torch.nn.Module, TLR]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        return model, TLR(
            torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9), update_every=3, rule="robust"
        )

    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 4, generator=gen), torch.randn(8, 1, generator=gen)) for _ in range(60)]

    def train(model, opt, part):
        for x, y in part:

            def closure(x=x, y=y):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                return loss

            opt.step(closure)

    model_a, opt_a = make()
    train(model_a, opt_a, batches)
    model_b, opt_b = make()
    train(model_b, opt_b, batches[:37])
    saved = copy.deepcopy(opt_b.state_dict())  # torch aliases the inner state in a state dict
    model_c, opt_c = make()
    model_c.load_state_dict(model_b.state_dict())
    opt_c.load_state_dict(saved)
    train(model_b, opt_b, batches[37:])
    train(model_c, opt_c, batches[37:])
    for pa, pc in zip(model_a.parameters(), model_c.parameters()):
        assert torch.equal(pa, pc)
    assert opt_a.get_lr() == opt_c.get_lr()
    assert opt_a.group_meta[0].rule_state == opt_c.group_meta[0].rule_state


def test_loss_guard_without_losses_warns_once() -> None:
    w = torch.nn.Parameter(torch.ones(3))
    opt = TLR(torch.optim.SGD([w], lr=0.1), update_every=2, loss_guard=True)
    with pytest.warns(RuntimeWarning, match="saw no loss") as caught:
        for _ in range(8):
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
    assert sum("saw no loss" in str(w.message) for w in caught) == 1


@pytest.mark.parametrize("rule", ["paper", "robust"])
def test_the_state_schema_names_every_key_tlr_writes(rule: str) -> None:
    from ntlr.state import GroupState, ParamState

    model = torch.nn.Linear(3, 2)
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5), update_every=2, rule=rule)
    for _ in range(6):
        opt.zero_grad()
        loss = model(torch.randn(4, 3)).pow(2).mean()
        loss.backward()
        if opt.observes_loss:
            opt.observe_loss(loss)
        opt.step()
    assert not any(k.startswith("tlr_") for k in opt.optimizer.param_groups[0])  # hyper-parameters only
    group_keys = {k for k in opt.state_dict()["param_groups"][0] if k.startswith("tlr_")}
    assert group_keys <= set(GroupState.__annotations__) and "tlr_factor" in group_keys
    assert ("tlr_loss_sum" in group_keys) == (rule == "robust")
    for p in model.parameters():
        assert {k for k in opt.state[p] if k.startswith("tlr_")} == set(ParamState.__annotations__)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"settled_max_factor": 0.5}, "settled_max_factor"),
        ({"max_rollbacks": -1}, "max_rollbacks"),
        ({"max_rollbacks": 1.5}, "max_rollbacks"),
        ({"momentum_windows": True}, "momentum_windows"),
        ({"search_window": -1}, "search_window"),
        ({"search_window": 2.5}, "search_window"),
        ({"max_factor": True}, "max_factor"),
    ],
)
def test_robust_rule_validates_its_counts_and_bounds(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RobustRule(**kwargs)


def test_robust_treats_a_window_after_a_first_window_rollback_as_a_first_window() -> None:
    """u_old is still zeros after the first window was rolled back: no Newton step (nor b − a ≤ 0 branch)
    can be read from a = b = 0."""
    rule = RobustRule()
    after = _stats(a=0.0, b=0.0, c=1.0, window=1, loss=_loss(2.0, first=2.3))
    decision = rule.decide(after, RobustState())
    assert decision.status == Status.FIRST_WINDOW and decision.factor == 1.0


@pytest.mark.parametrize(("update_every", "closure"), [(6, False), (2, False), (1, True)])
def test_robust_does_not_climb_back_into_a_stiff_directions_blowup(update_every: int, closure: bool) -> None:
    """An ill-conditioned quadratic (curvatures 1e-2 … 10): the windows are dominated by the flat
    directions, so the Newton step climbs until the stiff one explodes, and used to climb again after
    every rollback (the loss ended at 1e36 with K = 6 and no loss observed). Found by
    benchmarks/rule_stress.py."""
    g = torch.Generator().manual_seed(2)
    q = torch.linalg.qr(torch.randn(20, 20, generator=g))[0]
    hessian = q @ torch.diag(torch.logspace(-2, 1, 20)) @ q.T
    w = torch.nn.Parameter(torch.randn(20, generator=g))
    opt = TLR(torch.optim.SGD([w], lr=1e-2), update_every=update_every)

    def loss_fn() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.5 * w @ hessian @ w
        loss.backward()
        return loss

    start = loss_fn().item()
    for _ in range(100):
        if closure:
            opt.step(loss_fn)
        else:
            loss_fn()
            opt.step()
    with torch.no_grad():
        end = (0.5 * w @ hessian @ w).item()
    assert end < start
    assert any(r.status == Status.ROLLBACK for r in opt.history)


def test_robust_adds_up_a_streak_of_aligned_growing_windows() -> None:
    """An even window sums a period-two divergence into aligned windows (a > b) that each grow by less
    than the one-window threshold: together they count."""
    rule, state = RobustRule(), RobustState()
    first = rule.decide(WindowStats(a=2.2, b=1.0, c=5.0, lr=0.1, window=3, steps=10), state)
    assert not first.rollback  # 5 < 16
    second = rule.decide(WindowStats(a=11.0, b=5.0, c=25.0, lr=0.1, window=4, steps=10), state)
    rho = math.exp(math.log(25.0) / 40)
    assert second.rollback and second.factor == pytest.approx(1 / (1 + rho))
    # A window that is not aligned growth ends the streak.
    state = RobustState()
    rule.decide(WindowStats(a=2.2, b=1.0, c=5.0, lr=0.1, window=3, steps=10), state)
    rule.decide(WindowStats(a=0.5, b=5.0, c=4.0, lr=0.1, window=4, steps=10), state)
    assert not rule.decide(WindowStats(a=9.0, b=4.0, c=20.0, lr=0.1, window=5, steps=10), state).rollback


@pytest.mark.parametrize(("beta", "steps"), [(0.9, 10), (0.9, 4), (0.8, 5), (0.5, 1)])
def test_noise_alignment_is_what_momentum_gives_white_noise(beta: float, steps: int) -> None:
    from ntlr.rules import noise_alignment

    g = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m = torch.empty_like(g)
    acc = 0.0
    for t, value in enumerate(g.tolist()):
        acc = beta * acc + value
        m[t] = acc
    windows = m[1000 : 1000 + (len(m) - 1000) // steps * steps].reshape(-1, steps).sum(1)
    measured = (windows[1:] * windows[:-1]).mean() / (windows**2).mean()
    assert noise_alignment(beta, steps) == pytest.approx(measured.item(), abs=0.02)
    assert noise_alignment(0.0, steps) == 0.0


def test_robust_without_a_loss_reads_a_against_momentums_own_alignment() -> None:
    from ntlr.rules import noise_alignment

    rho = noise_alignment(0.9, 10)
    at_noise = WindowStats(a=rho, b=1.0, c=1.0, lr=0.1, window=3, steps=10, momentum=0.9)
    assert RobustRule().decide(at_noise, RobustState()).factor == pytest.approx(1.0)  # nothing to read
    assert RobustRule(noise_correction=False).decide(at_noise, RobustState()).factor > 1.2  # the old climb
    below = WindowStats(a=rho / 2, b=1.0, c=1.0, lr=0.1, window=3, steps=10, momentum=0.9)
    assert RobustRule().decide(below, RobustState()).factor < 1.0
    # With a loss, while searching (the step up undamped) a is read against momentum's alignment too; once
    # settled the loss vetoes a climb itself, and the (damped) step reads a as it is.
    with_loss = WindowStats(
        a=rho, b=1.0, c=1.0, lr=0.1, window=3, steps=10, momentum=0.9, loss=_loss(0.9), prev_loss=_loss(1.0)
    )
    assert RobustRule().decide(with_loss, RobustState()).factor == pytest.approx(1.0)
    settled = RobustState(settled=True)
    assert RobustRule().decide(with_loss, settled).factor == pytest.approx(1 + 0.33 * rho / (1 - rho))
    above = dataclasses.replace(with_loss, a=(1 + rho) / 2)  # halfway from momentum's alignment to 1
    # b / (b - a') with a' = 1/2
    assert RobustRule().decide(above, RobustState()).factor == pytest.approx(2.0)


# -- the progress gate (10), opt-in --------------------------------------------------------------------------
def _plateau_run(rule: RobustRule, means: list[float]) -> list[tuple[float, str]]:
    """Aligned windows (the Newton step says: climb) with the given window mean losses, prev = the last."""
    state = rule.init()
    decisions = []
    prev = None
    for window, mean in enumerate(means, start=1):
        stats = _stats(a=0.5, b=1.0, c=1.0, window=window, loss=_loss(mean, 1e-4), prev_loss=prev)
        decision = rule.decide(stats, state)
        decisions.append((decision.factor, str(decision.status)))
        prev = _loss(mean, 1e-4)
    return decisions


def test_without_progress_climbs_stop_and_then_the_rate_is_cut() -> None:
    flat = [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]  # stale from the second window on
    decisions = _plateau_run(RobustRule(patience=4), flat)
    statuses = [status for _, status in decisions]
    # window 1 sets the best; stale 1 climbs; stale 2 and 3: no climb; stale 4: cut, count restarts.
    assert statuses[1] != "plateau" and decisions[1][0] > 1.0
    assert decisions[2] == (1.0, "plateau") and decisions[3] == (1.0, "plateau")
    assert decisions[4] == (0.5, "plateau")
    assert decisions[5][0] > 1.0 and decisions[8] == (0.5, "plateau")
    # Off by default: the same windows climb throughout.
    assert all(factor >= 1.0 and status != "plateau" for factor, status in _plateau_run(RobustRule(), flat))


def test_while_the_loss_makes_progress_the_gate_changes_nothing() -> None:
    falling = [2.0 - 0.1 * i for i in range(12)]
    assert _plateau_run(RobustRule(patience=3), falling) == _plateau_run(RobustRule(), falling)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("patience", -1),
        ("patience", 1.5),
        ("plateau_factor", 0.0),
        ("sink_exponent", -0.1),
        ("sink_exponent", 1.5),
    ],
)
def test_bad_plateau_settings_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RobustRule(**{field: value})  # type: ignore[arg-type]


def test_a_custom_rule_that_lengthens_windows_is_not_told_about_robust_rule() -> None:
    @dataclasses.dataclass(frozen=True)
    class Longer:
        name: str = "longer"
        uses_loss: bool = False

        def window_length(self, update_every: int, group: object) -> int:
            return 2 * update_every

        def decide(self, stats: WindowStats, state: object) -> Decision:
            return Decision(1.0, Status.UPDATED)

    with pytest.warns(RuntimeWarning, match="uses windows of 6 steps") as caught:
        TLR(torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1), update_every=3, rule=Longer())
    assert "RobustRule" not in str(caught[0].message) and "window_length" in str(caught[0].message)


# -- the trust test (11) -------------------------------------------------------------------------------------
def _reach_stats(reach: float, mean: float, *, first: float = 2.3, window: int = 0, **kwargs) -> WindowStats:
    """A window whose displacement is ``reach`` times the weights' norm (lr 0.1, c = 1); before window 3
    no window was kept (b = 0: the first, or all rolled back) and the reference is the first loss."""
    weights_sq = (0.1 / reach) ** 2
    if window < 3:
        loss = _loss(mean, first=first)
        return _stats(a=0.0, b=0.0, window=window, weights_sq=weights_sq, loss=loss, **kwargs)
    return _stats(window=window, weights_sq=weights_sq, loss=_loss(mean), prev_loss=_loss(first), **kwargs)


def test_reach_is_the_displacement_over_the_weights_norm() -> None:
    rule = RobustRule()
    # lr 0.1 and c = 4: the window moved the weights by 0.2; their norm is 0.5.
    assert rule.reach(_stats(c=4.0, weights_sq=0.25)) == pytest.approx(0.4)
    assert math.isnan(rule.reach(_stats()))  # not handed the weights' norm
    assert math.isnan(rule.reach(_stats(weights_sq=0.0)))  # weights at 0: no scale to weigh against


@pytest.mark.parametrize("window", [0, 2])
def test_robust_rolls_back_a_long_reach_that_did_not_lower_the_loss(window: int) -> None:
    """Until a window is kept: the first window, or (window 2, b = 0) every window so far rolled back."""
    rule = RobustRule(max_reach=1.0, trust=0.25)
    # The first window of MNIST from alpha0 = 1 (measured): the weights moved by 12 times their norm and the
    # loss went from 2.30 to 2.83: not the half-rise the jump test needs; the reach test rolls it back, and
    # the cut aims at a reach of trust.
    wrecked = rule.decide(_reach_stats(12.0, 2.83, window=window), RobustState())
    assert wrecked.rollback and wrecked.factor == pytest.approx(0.25 / 12.0)
    flat = rule.decide(_reach_stats(1.5, 2.3, window=window), RobustState())  # a dead plateau, flat
    assert flat.rollback and flat.factor == pytest.approx(0.25 / 1.5)
    # The same reach with the loss falling beyond noise is progress; a reach within max_reach stands.
    assert not rule.decide(_reach_stats(12.0, 1.5, window=window), RobustState()).rollback
    assert not rule.decide(_reach_stats(0.9, 2.83, window=window), RobustState()).rollback
    off = RobustRule(max_reach=math.inf)
    assert not off.decide(_reach_stats(12.0, 2.83, window=window), RobustState()).rollback


def test_a_long_reach_down_a_significant_slope_is_progress() -> None:
    # A linear model from torch's init (weights' norm 0.47) on least squares, SGD m0.9 at 0.01, batch 32
    # (measured): the first window moved the weights 3.9 times their norm; its mean, 5.82 against a single
    # first loss of 6.54 with a standard error of 0.48, is within 3 of them, but it fell 0.62 a step, 3.7
    # standard errors of its slope: progress, not a wrecked model.
    rule = RobustRule(max_reach=1.0, trust=0.25)

    def first(mean: float, trend: float) -> WindowStats:
        loss = WindowLoss(mean, 0.23, 6.54, 0.23, trend, 0.167**2)
        return _stats(a=0.0, b=0.0, window=0, weights_sq=(0.1 / 3.9) ** 2, loss=loss)

    assert not rule.decide(first(5.82, -0.617), RobustState()).rollback
    assert rule.decide(first(5.82, -0.3), RobustState()).rollback  # a slope within 3 of its errors
    assert rule.decide(first(6.80, -0.617), RobustState()).rollback  # down, but from above where it began


def test_once_a_window_was_kept_reach_does_not_roll_back() -> None:
    # b > 0: a window was kept, and the Newton step judges the rate (a rise short of the jump test's 10 %).
    decision = RobustRule().decide(_reach_stats(5.0, 2.4, window=3), RobustState())
    assert not decision.rollback


def test_a_rollback_before_any_kept_window_does_not_settle_the_rate() -> None:
    """The first window's rollback is a safeguard's cut: the search (the secant's climb, max_factor) goes
    on from there; a rollback once a window was kept settles the rate as any decrease does."""
    rule = RobustRule()
    state = rule.init()
    first = rule.decide(_reach_stats(4.0, mean=2.5), state)  # overreached: rolled back, cut into trust
    assert first.rollback and first.factor < 1.0 and not state.settled
    climb = rule.decide(_stats(0.5, 1.0), state)
    assert climb.factor == pytest.approx(2.0) and not state.settled  # the secant's, not gamma's 1.33
    assert rule.decide(_stats(0.999, 1.0), state).factor == 100.0  # and max_factor, not settled's 2
    kept = rule.init()
    rule.decide(_stats(0.5, 1.0), kept)  # a window was kept (b > 0 from here on)
    jump = _stats(0.5, 1.0, loss=_loss(2.0, 1e-4), prev_loss=_loss(1.0, 1e-4))
    assert rule.decide(jump, kept).rollback and kept.settled


def test_trust_rollbacks_count_towards_max_rollbacks() -> None:
    rule, state = RobustRule(max_rollbacks=2), RobustState()
    wrecked = _reach_stats(2.0, 2.31, window=2)
    assert rule.decide(wrecked, state).rollback and rule.decide(wrecked, state).rollback
    kept = rule.decide(wrecked, state)
    assert not kept.rollback and kept.factor == pytest.approx(1 - rule.gamma)


@pytest.mark.parametrize("name", ["max_reach", "trust", "runaway_factor", "runaway_reach", "give_back"])
def test_reach_settings_must_be_positive(name: str) -> None:
    for bad in (0.0, -1.0, True, "0.5"):
        with pytest.raises(ValueError, match=name):
            RobustRule(**{name: bad})


def test_give_back_rise_must_be_a_real_number_at_least_0() -> None:
    for bad in (-0.1, math.nan, True, "0.5"):
        with pytest.raises(ValueError, match="give_back_rise"):
            RobustRule(give_back_rise=bad)
    assert RobustRule(give_back_rise=0.0).give_back_rise == 0.0
    assert RobustRule(give_back_rise=math.inf).give_back_rise == math.inf


@dataclasses.dataclass(frozen=True)
class _ScriptedRule:
    """A rule that always decides ``decision`` and keeps the stats it was handed."""

    decision: Decision
    uses_weight_norm: object = False
    name: str = "scripted"
    uses_loss: bool = False
    seen: list[WindowStats] = dataclasses.field(default_factory=list)

    def decide(self, stats: WindowStats, state: object) -> Decision:
        self.seen.append(stats)
        return self.decision


def test_tlr_hands_the_weights_norm_only_to_a_rule_that_uses_it() -> None:
    # Always, never, and (as RobustRule asks) only until a window was kept: the first here.
    for uses in (True, False, lambda kept: not kept):
        rule = _ScriptedRule(Decision(1.0, Status.UPDATED), uses_weight_norm=uses)
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        opt = TLR(torch.optim.SGD(model.parameters(), lr=0.1), update_every=2, rule=rule)
        starts = []
        for step in range(6):
            if step % 2 == 0:  # a window starts here
                starts.append(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))
            opt.zero_grad()
            model(torch.randn(5, 4)).pow(2).mean().backward()
            opt.step()
        seen = [stats.weights_sq for stats in rule.seen]
        assert len(seen) == 3
        if uses is True:
            assert seen == pytest.approx(starts, rel=1e-6)
        elif uses is False:
            assert all(math.isnan(x) for x in seen)
        else:
            assert seen[0] == pytest.approx(starts[0], rel=1e-6) and all(math.isnan(x) for x in seen[1:])
    assert RobustRule().uses_weight_norm(False) and not RobustRule().uses_weight_norm(True)
    assert not RobustRule(max_reach=math.inf, trust=math.inf).uses_weight_norm(False)


def test_a_rollback_past_trust_cuts_into_it_and_restarts_the_statistics() -> None:
    rule = RobustRule(trust=0.5)
    # A first window that moved the weights twentyfold their norm and exploded: cut to the rate that reaches
    # 0.5, and restart the inner statistics.
    far = rule.decide(_reach_stats(20.0, 9.0, window=0), RobustState())
    assert far.rollback and far.restart and far.factor == pytest.approx(0.5 / 20.0)
    # Past max_reach but not far past trust: the usual cut is lower, and nothing says the window blew up.
    near = RobustRule(max_reach=0.5, trust=0.5).decide(_reach_stats(0.6, 2.4, window=0), RobustState())
    assert near.rollback and not near.restart and near.factor == rule.rollback_factor
    # Once a window was kept, a jump is the plain rollback whatever its reach.
    later = rule.decide(_reach_stats(20.0, 9.0, window=3), RobustState())
    assert later.rollback and not later.restart and later.factor == rule.rollback_factor
    # A jump with no reach known (no weights' norm): the plain rollback.
    plain = rule.decide(_stats(loss=_loss(2.0), prev_loss=_loss(1.0)), RobustState())
    assert plain.rollback and not plain.restart and plain.factor == rule.rollback_factor
    # An absurd reach is floored: no cut below 1 / max_factor**2 in one rollback.
    assert rule.within_trust(_reach_stats(1e9, 9.0, window=0)) == pytest.approx(rule.max_factor**-2)


def test_tlr_restarts_the_inner_statistics_only_when_a_rollback_asks() -> None:
    for restart in (True, False):
        rule = _ScriptedRule(Decision(0.5, Status.ROLLBACK, rollback=True, restart=restart))
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        opt = TLR(torch.optim.Adam(model.parameters(), lr=0.01), update_every=3, rule=rule)
        start = [p.detach().clone() for p in model.parameters()]
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(5, 4)).pow(2).mean().backward()
            opt.step()
        for param, before in zip(model.parameters(), start):
            state = opt.state[param]
            assert torch.equal(param.detach(), before)  # rolled back
            assert not state["exp_avg"].any()  # every rollback clears the first moments
            assert (not state["exp_avg_sq"].any()) == restart
            assert (float(state["step"]) == 0.0) == restart


def test_with_the_budget_known_a_window_whose_loss_fell_holds_like_a_floor() -> None:
    rule = RobustRule()

    def settled() -> RobustState:  # past the windows that form the floor's mean, whose mean is log 0.9
        return RobustState(settled=True, steady_windows=10, alignment=math.log(0.9))

    # Mildly anti-aligned windows (the greedy step: x0.91) while the loss fell far beyond its noise.
    fell = {"a": -0.1, "b": 1.0, "c": 1.0, "loss": _loss(0.5), "prev_loss": _loss(1.0)}
    plain = rule.decide(_stats(**fell), settled())
    assert plain.factor == pytest.approx(1.0 / 1.1)
    # With total_steps' decay ahead the fall is progress: the step is taken against the floor's mean (9).
    held = rule.decide(_stats(**fell, annealed=True), settled())
    assert held.factor == pytest.approx(math.exp(math.log(1.0 / 1.1) - math.log(0.9)))
    # A rise still takes the plain step down, budget or not.
    rose = {**fell, "loss": _loss(2.0), "prev_loss": _loss(1.9, se2=1e-4)}
    assert rule.decide(_stats(**rose, annealed=True), settled()).factor == pytest.approx(1.0 / 1.1)


@pytest.mark.parametrize("total_steps", [None, 100])
def test_tlr_tells_the_rule_whether_a_budget_anneals_the_run(total_steps: int | None) -> None:
    rule = _ScriptedRule(Decision(1.0, Status.UPDATED))
    model = torch.nn.Linear(4, 3)
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.1), update_every=2, rule=rule, total_steps=total_steps)
    for _ in range(4):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    assert [stats.annealed for stats in rule.seen] == [total_steps is not None] * 2


def test_robust_progress_is_a_fall_beyond_the_windows_noise() -> None:
    """``progressed``: the mean loss fell below the last window's by more than rollback_z of their noise
    (successive-difference standard errors); without both losses, or with unknown noise, no progress."""
    rule = RobustRule()
    noise = 1e-4  # each window's squared standard error: their difference's sd is sqrt(2e-4) ≈ 0.0141
    fell = 3.5 * math.sqrt(2 * noise)
    assert rule.progressed(_stats(loss=_loss(1.0 - fell, noise), prev_loss=_loss(1.0, noise)))
    assert not rule.progressed(_stats(loss=_loss(1.0 - 0.5 * fell, noise), prev_loss=_loss(1.0, noise)))
    assert not rule.progressed(_stats(loss=_loss(1.0 + fell, noise), prev_loss=_loss(1.0, noise)))
    assert not rule.progressed(_stats(loss=_loss(0.5), prev_loss=None))
    assert not rule.progressed(_stats(loss=None, prev_loss=_loss(1.0)))
    unknown = WindowLoss(0.5, math.inf)  # one loss a window: no successive differences
    assert not rule.progressed(_stats(loss=unknown, prev_loss=WindowLoss(1.0, math.inf)))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda ps: torch.optim.SGD(ps, lr=1e-6, momentum=0.9), lambda k: momentum_warmup(0.9, k)),
        (
            lambda ps: torch.optim.SGD(ps, lr=1e-6, momentum=0.9, nesterov=True),
            lambda k: momentum_warmup(0.9, k, nesterov=True),
        ),
        (lambda ps: torch.optim.SGD(ps, lr=1e-6), lambda k: 1.0),
        (lambda ps: torch.optim.Adam(ps, lr=1e-6), lambda k: 1.0),  # bias-corrected: no ramp
    ],
)
def test_tlr_hands_the_rule_the_momentum_warmup_of_its_inner_optimizer(
    make: Callable, expected: Callable
) -> None:
    rule = _ScriptedRule(Decision(1.0, Status.UPDATED))
    model = torch.nn.Linear(4, 3)
    opt = TLR(make(model.parameters()), update_every=4, rule=rule)
    for _ in range(12):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    warmups = [stats.warmup for stats in rule.seen]
    assert warmups == pytest.approx([expected(4)] * 3)


def test_robust_climbs_where_the_steps_fall_below_the_weights_rounding() -> None:
    """Weights that did not move although their gradients were finite and nonzero (``stalled``): while
    searching the rate climbs by max_factor; once settled (converged to float resolution) it is held, and
    without gradients (``stalled`` False) it is held as before."""
    rule = RobustRule()
    still = {"a": 0.0, "b": 0.0, "c": 0.0}
    climbed = rule.decide(_stats(**still, stalled=True), rule.init())
    assert climbed.factor == rule.max_factor and climbed.status == Status.CAPPED
    assert rule.decide(_stats(**still, stalled=False), rule.init()).factor == 1.0
    assert rule.decide(_stats(**still, stalled=True), RobustState(settled=True)).factor == 1.0


def test_tlr_climbs_out_of_a_rate_too_small_to_move_float32_weights() -> None:
    """Plain SGD from 1e-8 on a full-batch least squares: each step is below half an ulp of every weight,
    so the weights never change; TLR reads the finite, nonzero gradients and climbs until they move."""
    torch.manual_seed(0)
    x, y = torch.randn(256, 8), torch.randn(256, 1)
    model = torch.nn.Linear(8, 1)
    with torch.no_grad():  # weights of size 0.5-1: ulp 6e-8 to 1.2e-7, far above 1e-8 x gradient
        model.weight.copy_(torch.linspace(0.5, 1.0, 8).reshape(1, 8))
        model.bias.fill_(0.75)
    opt = TLR(torch.optim.SGD(model.parameters(), lr=1e-8), update_every=5)
    initial = torch.nn.functional.mse_loss(model(x), y).item()
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.observe_loss(loss)
        opt.step()
    assert opt.history[0].status == Status.CAPPED and opt.history[0].c == 0.0
    assert opt.get_lr()[0] > 1e-4
    assert torch.nn.functional.mse_loss(model(x), y).item() < 0.5 * initial


def test_robust_climbs_out_of_a_tiny_rate_through_momentums_warmup() -> None:
    # SGD m0.9 from 1e-6 on mini-batches of a linear model: the second window is the first's, grown by the
    # buffer filling up, and the loss is level within its noise; the rule climbs x100 there, not x(1 + gamma).
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    x, y = torch.randn(4096, 8), torch.randn(4096, 1)
    opt = TLR(torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9), update_every=10)
    for step in range(20):
        batch = slice(32 * step, 32 * step + 32)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        loss.backward()
        opt.observe_loss(loss)
        opt.step()
    second = opt.history[1]
    assert second.status == Status.CAPPED and second.factor == RobustRule().max_factor


def test_robust_allows_for_the_warmup_only_where_the_loss_did_not_fall() -> None:
    # The second window's ramp: the loss level within its noise, x100; fallen beyond it, the rate already
    # acts, and the growth past 2b is read as growth.
    rule = RobustRule()
    ramp = {"a": 1.92, "b": 1.0, "c": 3.69, "lr": 1e-3, "window": 1, "steps": 10, "momentum": 0.9}

    def climb(now: float, before: float, se2: float) -> float:
        stats = WindowStats(**ramp, warmup=3.7, loss=_loss(now, se2), prev_loss=_loss(before, se2))
        return rule.decide(stats, RobustState(old_fresh=True)).factor

    assert climb(2.0, 2.3, se2=1e-4) == pytest.approx(1 + rule.gamma)
    assert climb(2.0, 2.3, se2=1.0) == rule.max_factor


def test_tlr_says_per_group_whether_the_rule_still_searches() -> None:
    """``TLR.searching``: True per group until the robust rule settles (its first step down), False
    throughout for the paper's rule, which does not say; a group added later searches on its own."""
    torch.manual_seed(0)
    x, y = torch.randn(512, 8), torch.randn(512, 1)
    model = torch.nn.Linear(8, 1)
    opt = TLR(torch.optim.SGD([model.weight], lr=1e-3), update_every=5)
    paper = TLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=1e-3), update_every=5, rule="paper")
    assert opt.searching == [True] and paper.searching == [False]
    seen = []
    for step in range(200):
        batch = slice(32 * (step % 16), 32 * (step % 16) + 32)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        loss.backward()
        opt.observe_loss(loss)
        opt.step()
        seen.append(opt.searching[0])
        if step == 100:
            opt.add_param_group({"params": [model.bias], "lr": 1e-3})
    assert seen[0] and not seen[-1]
    assert opt.searching[0] is False and len(opt.searching) == 2
    settled_at = seen.index(False)
    assert all(not s for s in seen[settled_at:])
    assert any(record.factor < 1.0 for record in opt.history if record.step <= 5 * (settled_at // 5 + 1))


def test_a_short_window_that_started_high_rolls_back_one_window_deeper() -> None:
    """Item 19: a jump whose first loss (measured at the window's start) is already above the last kept
    window's mean by rollback_rise: the kept window's last steps did it, and the rollback goes one window
    deeper; not where only the later losses jumped, nor over windows of search_window steps or more."""
    rule = RobustRule()
    prev = _loss(1.0)

    def decide(first: float, steps: int) -> Decision:
        stats = WindowStats(
            a=0.5,
            b=1.0,
            c=1.0,
            lr=0.1,
            window=3,
            steps=steps,
            loss=WindowLoss(3.0, 1e-6, first, 1e-6),
            prev_loss=prev,
        )
        return rule.decide(stats, RobustState(settled=True, settled_rate=0.1))

    high = decide(first=2.5, steps=3)
    assert high.rollback and high.deeper and high.status == Status.ROLLBACK
    assert decide(first=1.05, steps=3).rollback and not decide(first=1.05, steps=3).deeper
    assert decide(first=2.5, steps=rule.search_window).rollback
    assert not decide(first=2.5, steps=rule.search_window).deeper


def test_the_quickstart_at_k3_never_restores_weights_a_blow_up_already_ruined() -> None:
    """A new user's audit (digits, batch 128, K = 3, plain SGD from 1e-3, total_steps; seed 0): steps
    28-30 took the loss from 1.4 to 10.3, which that window's losses (each measured before its step) could
    not show; the next window was rolled back to its own start, already at 10.3, three times in a row, and
    the search settled there. Now the rollback goes back to before the blow-up."""
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(features / 16.0, dtype=torch.float32), torch.tensor(labels)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 1000), torch.nn.ReLU(), torch.nn.Linear(1000, 10))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=128,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    opt = TLR(
        torch.optim.SGD(model.parameters(), lr=1e-3),
        steps_per_epoch=len(loader),
        total_steps=20 * len(loader),
    )
    initial = torch.nn.functional.cross_entropy(model(x), y).item()
    worst_restored = 0.0
    for _ in range(3):
        for xb, yb in loader:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.observe_loss(loss)
            seen = len(opt.history)
            opt.step()
            if any(record.status == Status.ROLLBACK for record in opt.history[seen:]):
                with torch.no_grad():
                    worst_restored = max(
                        worst_restored, torch.nn.functional.cross_entropy(model(x), y).item()
                    )
    assert any(record.status == Status.ROLLBACK for record in opt.history)
    assert worst_restored < initial


def test_while_the_floors_mean_forms_a_climb_a_floor_explains_waits() -> None:
    """Item 9: the first ``1 / pool`` settled steady windows take the plain step, except, without a budget,
    a climb no larger than momentum's own alignment shows on a floor (the floor band's top); a larger
    climb and any step down pass plain."""
    rule = RobustRule()
    steady = {"loss": _loss(1.0, se2=1e-2), "prev_loss": _loss(1.0, se2=1e-2), "momentum": 0.9}
    high = rule.floor_band(_stats(**steady))[1]
    assert high > 0.0

    def forming() -> RobustState:
        return RobustState(settled=True)

    def step(a: float) -> float:
        return rule.decide(_stats(a=a, **steady), forming()).factor

    plain = newton_factor(0.35, 1.0, gamma=rule.gamma, max_factor=rule.max_factor).factor
    assert 1.0 < plain <= math.exp(high)  # within the band: a floor's own alignment
    assert step(0.35) == 1.0
    strong = newton_factor(0.7, 1.0, gamma=rule.gamma, max_factor=rule.max_factor).factor
    assert strong > math.exp(high)
    assert step(0.7) == pytest.approx(strong)
    assert step(-0.3) == pytest.approx(1.0 / 1.3)
    # Without momentum the band's top is 0: every climb passes.
    plain_sgd = rule.decide(_stats(a=0.35, **{**steady, "momentum": 0.0}), forming())
    assert plain_sgd.factor == pytest.approx(plain)
    # With the budget's decay ahead (which settles an overshoot) the climb passes, steady or fallen.
    assert rule.decide(_stats(a=0.35, **steady, annealed=True), forming()).factor == pytest.approx(plain)
    fell = {**steady, "loss": _loss(0.5, se2=1e-4), "prev_loss": _loss(1.0, se2=1e-4), "annealed": True}
    assert rule.decide(_stats(a=0.35, **fell), forming()).factor == pytest.approx(plain)
    # Once the mean has formed, the pooled step decides as before.
    formed = RobustState(settled=True, steady_windows=10, alignment=0.0)
    assert rule.decide(_stats(a=0.35, **steady), formed).factor == pytest.approx(plain)


# -- a short window without a loss climbs at a search window's pace per step (6) ---------------------------
@pytest.mark.parametrize("settled", [False, True])
@pytest.mark.parametrize("steps", [1, 3, 9, 10, 40])
def test_a_short_window_whose_loss_cannot_veto_climbs_per_step_as_fast_as_a_search_window(
    steps: int, settled: bool
) -> None:
    rule = RobustRule()
    limit = rule.settled_max_factor if settled else rule.max_factor
    aligned = WindowStats(a=0.999, b=1.0, c=1.0, lr=0.1, window=3, steps=steps)  # Newton: far above limit
    got = rule.decide(aligned, RobustState(settled=settled))
    # Searching, a few steps' climb is paced per step; settled, settled_max_factor already paces it.
    expected = limit if settled else limit ** min(1.0, steps / rule.search_window)
    assert got.factor == pytest.approx(expected) and got.status == Status.CAPPED
    # With a loss observed (and not rising) the window's length does not slow the climb...
    with_loss = dataclasses.replace(aligned, loss=_loss(1.0), prev_loss=_loss(1.0))
    assert rule.decide(with_loss, RobustState(settled=settled)).factor == pytest.approx(limit)
    # ...unless the window has one loss, whose noise is unknown (K = 1): then the per-step pace again.
    one_loss = dataclasses.replace(with_loss, loss=_loss(1.0, se2=math.nan))
    assert rule.decide(one_loss, RobustState(settled=settled)).factor == pytest.approx(expected)


def test_without_a_loss_a_short_window_is_cut_as_fast_as_before() -> None:
    rule = RobustRule()
    down = rule.decide(WindowStats(a=-3.0, b=1.0, c=1.0, lr=0.1, window=3, steps=1), RobustState())
    assert down.factor == pytest.approx(1 / 4)  # the undamped step, b / (b - a): the cap is on climbs only


# -- an inner optimizer that caches its rate takes TLR's new one on its very next step ---------------------
@dataclasses.dataclass
class _Halve:
    """A rule that halves the rate every window (the first has nothing to compare with)."""

    name: str = "halve"
    uses_loss: bool = False

    def decide(self, stats: WindowStats, state: object) -> Decision:
        return Decision(1.0 if stats.window == 0 else 0.5, Status.UPDATED)


@pytest.mark.parametrize("update_every", [1, 3])
def test_asgd_steps_at_the_rate_tlr_just_set(update_every: int) -> None:
    # ASGD applies the eta it computed from the previous step's lr: without a rescale, every window's first
    # step would still take the rate TLR had just changed.
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(8))
    opt = TLR(torch.optim.ASGD([weight], lr=0.05, lambd=0.0), update_every=update_every, rule=_Halve())
    for _ in range(4 * update_every):
        opt.zero_grad()
        weight.pow(2).sum().backward()
        before, grad = weight.detach().clone(), weight.grad.detach().clone()
        rate = opt.get_lr()[0]  # the rate this step is to take
        opt.step()
        taken = ((before - weight.detach()) / grad).mean().item()
        assert taken == pytest.approx(rate, rel=1e-5)
    assert opt.get_lr()[0] == pytest.approx(0.05 * 0.5**3)


def test_tlr_hands_a_two_argument_weights_hook_the_groups_rule_state() -> None:
    # RobustRule's runaway guard (14) asks for <w, w> from its state; a one-argument hook is asked as before.
    seen: list[object] = []
    rule = _ScriptedRule(
        Decision(1.0, Status.UPDATED), uses_weight_norm=lambda kept, state: seen.append(state) or False
    )
    opt = _linear_windows(rule, steps=6)
    assert len(seen) == 3 and all(state is opt.group_meta[0].rule_state for state in seen)


def _linear_windows(rule: object, steps: int) -> TLR:
    """TLR(SGD) with ``rule`` at K = 2 after ``steps`` steps on a random linear model."""
    model = torch.nn.Linear(4, 3)
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.1), update_every=2, rule=rule)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    return opt


def test_a_weights_hook_that_is_a_method_gets_the_state_and_tlr_keeps_no_rule_alive() -> None:
    import gc
    import weakref

    seen: list[object] = []

    class Rule:
        name = "method-hook"
        uses_loss = False

        def decide(self, stats: WindowStats, state: object) -> Decision:
            return Decision(1.0, Status.UPDATED)

        def uses_weight_norm(self, kept: bool, state: object = None) -> bool:
            seen.append(state)
            return False

    method_rule = Rule()
    opt = _linear_windows(method_rule, steps=4)
    assert len(seen) == 2 and all(state is opt.group_meta[0].rule_state for state in seen)
    alive = weakref.ref(method_rule)
    del opt, method_rule
    gc.collect()
    assert alive() is None  # the signature cache holds functions, not the rule that asked


# -- item 18: without a loss, no climb on directions that grew ---------------------------------------------
@pytest.mark.parametrize("growth", [1.0, 1.4, 1.6, 4.0])
def test_without_a_loss_a_climb_on_directions_that_grew_is_held(growth: float) -> None:
    """A searching window aligned enough to climb: held at 1 where its direction per unit rate grew past
    ``blind_growth`` (1.5) times the last one's and no loss was observed; with a falling loss, or with
    the test off, it climbs."""
    rule = RobustRule()
    blind = _stats(a=0.6, c=growth)
    seen = _stats(a=0.6, c=growth, loss=_loss(1.0), prev_loss=_loss(1.2))
    held = rule.decide(blind, rule.init())
    assert held.factor == (1.0 if growth > rule.blind_growth else 2.0) and not held.rollback
    assert rule.decide(seen, rule.init()).factor == 2.0
    assert RobustRule(blind_growth=math.inf).decide(blind, RobustState()).factor == 2.0


def test_without_a_loss_growing_directions_never_hold_a_step_down() -> None:
    rule = RobustRule()
    decision = rule.decide(_stats(a=-0.5, c=4.0), rule.init())
    assert decision.factor < 1.0
