"""Annealing: the budget-aware decay (``TLR(total_steps=N)``) and the rule holding still while a schedule
anneals (a climb read from a scheduled cut would undo it)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from ntlr import TLR, MetaStepDecision, Status, WindowStats
from ntlr.functional import anneal_multiplier


def test_anneal_multiplier_is_flat_then_a_straight_line_to_zero() -> None:
    assert [anneal_multiplier(t, 10, 4) for t in range(12)] == [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0]
    assert anneal_multiplier(5, None, 4) == 1.0
    assert anneal_multiplier(9, 10, 0) == 1.0


def _quadratic(steps: int, **kwargs) -> tuple[TLR, list[float]]:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8))
    opt = TLR(torch.optim.SGD([w], lr=0.05, momentum=0.5), update_every=5, rule="robust", **kwargs)
    rates = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (w * w).sum() + 0.01 * (w * torch.randn(8)).sum()).backward()
        rates.append(opt.get_lr()[0])
        opt.step()
    return opt, rates


def test_total_steps_decays_the_effective_rate_over_the_last_fraction() -> None:
    opt, rates = _quadratic(100, total_steps=100, anneal_fraction=0.2)
    trained = opt.param_groups[0]["lr"] * opt.group_meta[0].factor
    # The last 20 steps: the trained rate times 20/20, 19/20, ..., 1/20 (the factor holds meanwhile).
    assert rates[80] == pytest.approx(trained)
    assert rates[-1] == pytest.approx(trained / 20)
    assert all(later < earlier for earlier, later in itertools.pairwise(rates[80:]))
    # Before the decay the run is the one without a budget, step for step.
    _, free = _quadratic(80)
    assert rates[:80] == free


def test_past_total_steps_the_rate_is_zero_and_tlr_says_so() -> None:
    with pytest.warns(RuntimeWarning, match="past total_steps=30"):
        _, rates = _quadratic(40, total_steps=30)
    assert rates[30:] == [0.0] * 10


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"total_steps": 0}, ValueError, "total_steps must be >= 1"),
        ({"total_steps": 10.0}, TypeError, "total_steps must be an int"),
        ({"total_steps": 10, "anneal_fraction": 1.5}, ValueError, "anneal_fraction must be"),
        ({"anneal_fraction": -0.1}, ValueError, "anneal_fraction must be"),
    ],
)
def test_anneal_arguments_are_checked(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        TLR(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1), update_every=2, **kwargs)


def test_a_budget_set_after_construction_is_the_constructors() -> None:
    _, built_with = _quadratic(100, total_steps=100, anneal_fraction=0.3)
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8))
    opt = TLR(torch.optim.SGD([w], lr=0.05, momentum=0.5), update_every=5, rule="robust")
    rates = []
    for t in range(100):
        if t == 40:  # counted from the first step, whenever it is set
            opt.set_total_steps(100, anneal_fraction=0.3)
        opt.zero_grad()
        (0.5 * (w * w).sum() + 0.01 * (w * torch.randn(8)).sum()).backward()
        rates.append(opt.get_lr()[0])
        opt.step()
    assert rates == built_with
    opt.set_total_steps(None)  # cleared: the trained rate again, no ramp
    assert opt.get_lr()[0] == pytest.approx(opt.param_groups[0]["lr"] * opt.group_meta[0].factor)
    assert opt.total_steps is None


def test_a_budget_set_after_construction_is_checked_by_name() -> None:
    opt = TLR(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1), update_every=2)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        opt.set_total_steps(0)
    with pytest.raises(ValueError, match="anneal_fraction must be"):
        opt.set_total_steps(10, anneal_fraction=2.0)
    assert opt.total_steps is None  # a refused budget changes nothing
    on_device = TLR(
        torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1),
        update_every=2,
        rule="paper",
        host_sync=False,
    )
    with pytest.raises(ValueError, match="host_sync=False"):
        on_device.set_total_steps(10)


def _under_schedule(schedule: Any, rule: Any = "robust") -> tuple[TLR, list[float], list[float]]:
    """100 steps on a quadratic from a rate far too small (the rule climbs), under ``schedule(opt)``
    stepped every step: the TLR, its factor and the scheduled lr after each step."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.full((4,), 10.0))
    opt = TLR(torch.optim.SGD([w], lr=1e-3), update_every=5, rule=rule)
    scheduler = schedule(opt)
    factors, scheduled = [], []
    for _ in range(100):
        opt.zero_grad()
        (0.5 * (w * w).sum()).backward()
        opt.step()
        scheduler.step()
        factors.append(opt.group_meta[0].factor)
        scheduled.append(opt.param_groups[0]["lr"])
    return opt, factors, scheduled


def test_a_settled_rule_does_not_climb_against_a_decaying_schedule() -> None:
    """A schedule's cut shortens the steps: a settled rule would read windows that no longer reach the
    valley as "too small a rate" and climb back (the trained factor grew ~9x under StepLR halving each
    epoch). Below the schedule's peak, a settled rule's climbs are held; a search's are not."""
    step_lr = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)  # noqa: E731
    opt, factors, _ = _under_schedule(step_lr, rule=_Scripted(2.0, searching=False))
    assert factors[18] > 1.0  # before the first cut the rule climbs as usual
    assert max(factors[20:]) == factors[19]  # after it, never again
    assert any(r.status == Status.SCHEDULE_HOLD for r in opt.history)
    _, searching, _ = _under_schedule(step_lr, rule=_Scripted(2.0, searching=True))
    assert searching[-1] == 2.0**20  # every window climbed: the search is free


def test_a_schedule_that_decays_from_the_start_leaves_the_search_free() -> None:
    """Cosine (or linear) decay starts at the first step: holding every climb below the peak kept the rate
    at α0 for the whole run, and holding the search's climbs past half the peak cut short the searches of
    short runs (docs/rules.md, "A search passes a schedule"). Until the rule settles, its climbs pass; on
    this quadratic, whose windows stay aligned, it never settles, and the rate it finds is the curvature's
    (the optimum is 1), whatever the schedule."""
    opt, factors, scheduled = _under_schedule(
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 100)
    )
    assert factors[15] > 50.0  # the search climbed although the schedule was already decaying
    half = next(t for t, lr in enumerate(scheduled) if lr <= 0.5e-3)
    assert max(factors[half:]) > 2 * factors[half]  # and on past half the peak
    assert not any(r.status == Status.SCHEDULE_HOLD for r in opt.history)
    assert 0.1 < max(r.lr for r in opt.history) < 1.0


class _Scripted:
    """A rule that scales the rate by ``factor`` every window and says whether it is still searching and
    whether each window made progress."""

    name = "scripted"
    uses_loss = False
    holds_under_schedules = True

    def __init__(self, factor: float, searching: bool | None, progressed: bool | None = None) -> None:
        self.factor = factor
        if searching is not None:
            self.searching = lambda state: searching
        if progressed is not None:
            self.progressed = lambda stats: progressed

    def decide(self, stats: WindowStats, state: object) -> MetaStepDecision:
        return MetaStepDecision(self.factor, Status.UPDATED)


def _cosine(opt: TLR) -> Any:
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, 100)


@pytest.mark.parametrize("searching", [True, False, None])
def test_a_rule_says_whether_its_search_passes_a_schedule(searching: bool | None) -> None:
    """The search-passes-the-schedule exception is the rule's call (``searching(state)``), not a field TLR
    reads off one rule's state: a rule without the method is held below the peak from the first cut."""
    opt, factors, scheduled = _under_schedule(_cosine, rule=_Scripted(2.0, searching))
    half = next(t for t, lr in enumerate(scheduled) if lr <= 0.5e-3)
    if searching:
        assert factors[-1] == 2.0 ** len(opt.history)  # every climb passed, past the half too
        assert half < len(factors)
    else:
        assert max(factors) == factors[4] == 1.0  # every climb held: the schedule had cut from step 1
        assert any(r.status == Status.SCHEDULE_HOLD for r in opt.history)


@pytest.mark.parametrize("progressed", [True, False])
def test_a_settled_rule_climbs_through_a_schedule_only_where_it_made_progress(progressed: bool) -> None:
    """A search can settle on a step down far below the rate's scale; a window whose loss fell beyond noise
    (``Rule.progressed``) says so, which a schedule's cut alone does not: its climb passes while the
    schedule has cut less than half (docs/rules.md, "Under a schedule")."""
    _, factors, scheduled = _under_schedule(_cosine, rule=_Scripted(1.5, False, progressed))
    half = next(t for t, lr in enumerate(scheduled) if lr <= 0.5e-3)
    if progressed:
        assert factors[half - 1] == pytest.approx(1.5 ** (half // 5))  # every window before the half climbed
        assert max(factors[half:]) == factors[half]  # past the half the schedule has it
    else:
        assert max(factors) == 1.0


@pytest.mark.parametrize("searching", [True, False])
def test_below_a_schedules_peak_a_settled_rule_does_not_step_down_either(searching: bool) -> None:
    """Once the rate's scale is found, the schedule anneals: the rule's own steps down would compound with
    its decay (Fashion-MNIST under cosine: 0.141 with them, 0.086 without, docs/rules.md). A search's step
    down (the window that settles it) passes."""
    opt, factors, _ = _under_schedule(_cosine, rule=_Scripted(0.5, searching))
    if searching:
        assert factors[-1] == 0.5 ** len(opt.history)  # every window stepped down
    else:
        assert factors[-1] == 1.0
        assert {r.status for r in opt.history} == {Status.SCHEDULE_HOLD}
    opt = TLR(
        torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=1e-3),
        update_every=5,
        rule=_Scripted(0.5, False),
    )
    for _ in range(20):  # without a schedule nothing is held
        opt.zero_grad()
        opt.param_groups[0]["params"][0].sum().backward()
        opt.step()
    assert opt.group_meta[0].factor == 0.5**4


def test_the_paper_rule_stays_eq_8_under_a_schedule() -> None:
    """rule="paper" is the paper's rule exactly: no hold (tests/test_reference.py checks it under a
    changing base lr)."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.full((4,), 10.0))
    opt = TLR(torch.optim.SGD([w], lr=1e-3), update_every=5, rule="paper")
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
    for _ in range(60):
        opt.zero_grad()
        (0.5 * (w * w).sum()).backward()
        opt.step()
        scheduler.step()
    assert not any(r.status == Status.SCHEDULE_HOLD for r in opt.history)


def test_the_bench_builds_the_annealed_default_from_its_budget() -> None:
    """``anneal: True`` in a run's overrides is TLR(total_steps=the run's steps): the long tier's row."""
    from ntlr_bench.optimizers import OPTIMIZERS

    built = OPTIMIZERS["tlr_sgd"].build(
        [torch.nn.Parameter(torch.ones(2))], lr=0.1, steps_per_epoch=10, total_steps=200, anneal=True
    )
    assert built.optimizer.total_steps == 200 and built.optimizer.anneal_steps == 40
    plain = OPTIMIZERS["tlr_sgd"].build(
        [torch.nn.Parameter(torch.ones(2))], lr=0.1, steps_per_epoch=10, total_steps=200
    )
    assert plain.optimizer.total_steps is None


def test_a_tlr_pickled_before_these_options_unpickles_and_steps() -> None:
    """An older pickle has no total_steps, no loss log, no schedule peak, a dict rule state, and its per-group
    state in the param groups (tlr_* keys) rather than in TLR.group_meta."""
    import pickle

    w = torch.nn.Parameter(torch.ones(3))
    opt = TLR(torch.optim.SGD([w], lr=0.1, momentum=0.9), update_every=10)
    for _ in range(3):
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        opt.observe_loss(loss)
        opt.step()
    entries = {k: v for k, v in opt.state_dict()["param_groups"][0].items() if k.startswith("tlr_")}
    state = opt.__getstate__().copy()
    for name in ("total_steps", "anneal_steps", "_step_losses", "_steps_without_loss", "_observed_any"):
        del state[name]
    for name in ("group_meta", "_log", "_history", "_unread", "sketch", "host_sync"):
        del state[name]
    state["history"] = []  # an attribute then, a property now
    del entries["tlr_schedule_peak"]
    entries["tlr_rule_state"] = {"settled": 1.0, "rollbacks": 0.0}
    opt.optimizer.param_groups[0].update(entries)
    old = TLR.__new__(TLR)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert not any(key.startswith("tlr_") for key in old.optimizer.param_groups[0])  # moved into the record
    meta = old.group_meta[0]
    assert old.total_steps is None and meta.rule_state.settled is True and meta.steps == 3
    assert meta.carried_count == 3  # the open window's losses came along as sums
    for _ in range(22):
        old.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        old.observe_loss(loss)
        old.step()
    assert len(old.history) == 2


def test_tlr_around_schedule_free_warns() -> None:
    """Measured: TLR over Schedule-Free diverges where Schedule-Free alone does not (docs/rules.md)."""
    schedulefree = pytest.importorskip("schedulefree")
    w = torch.nn.Parameter(torch.ones(3))
    with pytest.warns(RuntimeWarning, match="Schedule-Free keeps its own averaged sequences"):
        TLR(schedulefree.SGDScheduleFree([w], lr=0.1), update_every=10)
