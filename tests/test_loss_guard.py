"""The opt-in loss guard (``TLR(loss_guard=True)``, beyond the paper): its rule, its plumbing, its cost."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from ntlr import TLR
from ntlr.functional import MetaStepDecision, WindowLoss, guarded_factor

GAMMA = 0.33
UP = MetaStepDecision(1.5, "updated")


# -- the rule ------------------------------------------------------------------------------------------
def test_window_loss_from_sums_is_the_mean_and_its_squared_standard_error() -> None:
    losses = [1.0, 2.0, 4.0, 7.0]
    stats = WindowLoss.from_sums(sum(losses), sum(x * x for x in losses), len(losses))
    mean = sum(losses) / 4
    sample_variance = sum((x - mean) ** 2 for x in losses) / 3
    assert stats.mean == pytest.approx(mean)
    assert stats.variance == pytest.approx(sample_variance / 4)
    assert WindowLoss.from_sums(0.0, 0.0, 0) is None
    assert WindowLoss.from_sums(3.0, 9.0, 1) == WindowLoss(3.0, math.inf)


def test_no_rise_keeps_the_decision() -> None:
    assert guarded_factor(UP, WindowLoss(1.0, 0.0), WindowLoss(1.0, 0.0), gamma=GAMMA) is UP
    assert guarded_factor(UP, WindowLoss(0.5, 0.0), WindowLoss(1.0, 0.0), gamma=GAMMA) is UP


def test_a_noisy_rise_vetoes_an_increase_and_keeps_a_decrease() -> None:
    noisy = WindowLoss(1.1, 1.0)  # a rise of 0.1 against a standard error of about 1.4
    guarded = guarded_factor(UP, noisy, WindowLoss(1.0, 1.0), gamma=GAMMA)
    assert (guarded.factor, guarded.status) == (1.0, "loss_guard")
    down = MetaStepDecision(0.9, "updated")
    assert guarded_factor(down, noisy, WindowLoss(1.0, 1.0), gamma=GAMMA) is down


@pytest.mark.parametrize("status", ["updated", "capped"])
def test_a_significant_rise_shrinks_by_one_minus_gamma(status: str) -> None:
    decision = MetaStepDecision(2.0, status)
    guarded = guarded_factor(decision, WindowLoss(2.0, 0.01), WindowLoss(1.0, 0.01), gamma=GAMMA)
    assert guarded.factor == pytest.approx(1.0 - GAMMA)
    assert guarded.status == "loss_guard" and not guarded.skipped
    # z = 0: every rise is significant; a large z: none is.
    assert guarded_factor(UP, WindowLoss(1.1, 1.0), WindowLoss(1.0, 1.0), gamma=GAMMA, z=0.0).factor == (
        pytest.approx(1.0 - GAMMA)
    )
    clear = WindowLoss(2.0, 0.01), WindowLoss(1.0, 0.01)
    assert guarded_factor(UP, *clear, gamma=GAMMA, z=100.0).factor == 1.0


@pytest.mark.parametrize("status", ["nonpositive_denominator", "nonfinite"])
def test_any_rise_after_a_skipped_newton_step_shrinks(status: str) -> None:
    decision = MetaStepDecision(1.0, status)
    guarded = guarded_factor(decision, WindowLoss(1.1, 1.0), WindowLoss(1.0, 1.0), gamma=GAMMA)
    assert guarded.factor == pytest.approx(1.0 - GAMMA) and guarded.status == "loss_guard"


def test_the_shrink_never_zeroes_the_rate() -> None:
    guarded = guarded_factor(UP, WindowLoss(9.0, 0.0), WindowLoss(1.0, 0.0), gamma=1.0)
    assert guarded.factor == 0.5


def test_tolerance_ignores_small_relative_rises() -> None:
    now, prev = WindowLoss(1.05, 0.0), WindowLoss(1.0, 0.0)
    assert guarded_factor(UP, now, prev, gamma=GAMMA, tolerance=0.1) is UP
    assert guarded_factor(UP, now, prev, gamma=GAMMA, tolerance=0.01).status == "loss_guard"
    # Relative to |previous| so that negative losses work too.
    assert guarded_factor(UP, WindowLoss(-0.95, 0.0), WindowLoss(-1.0, 0.0), gamma=GAMMA, tolerance=0.1) is UP


def test_nothing_to_compare_passes_through() -> None:
    first = MetaStepDecision(1.0, "first_window")
    assert guarded_factor(first, WindowLoss(9.0, 0.0), WindowLoss(1.0, 0.0), gamma=GAMMA) is first
    assert guarded_factor(UP, None, WindowLoss(1.0, 0.0), gamma=GAMMA) is UP
    assert guarded_factor(UP, WindowLoss(9.0, 0.0), None, gamma=GAMMA) is UP
    assert guarded_factor(UP, WindowLoss(9.0, 0.0), WindowLoss(math.nan, 0.0), gamma=GAMMA) is UP


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_nonfinite_window_loss_is_a_rise(bad: float) -> None:
    guarded = guarded_factor(UP, WindowLoss(bad, math.nan), WindowLoss(1.0, 0.0), gamma=GAMMA)
    assert guarded.factor == pytest.approx(1.0 - GAMMA)


# -- TLR -----------------------------------------------------------------------------------------------
def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 4, generator=gen), torch.randn(16, 2, generator=gen)) for _ in range(n)]


def _train(model: nn.Module, opt: TLR, batches, *, mode: str) -> list[float]:
    """mode: 'plain' (step()), 'closure' (step(closure)), 'observe' / 'observe_float' (observe_loss)."""
    lrs = []
    for x, y in batches:

        def closure(x=x, y=y) -> torch.Tensor:
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            return loss

        if mode == "closure":
            opt.step(closure)
        else:
            loss = closure()
            if mode == "observe":
                opt.observe_loss(loss)
            elif mode == "observe_float":
                opt.observe_loss(loss.item())
            opt.step()
        lrs.append(opt.get_lr()[0])
    return lrs


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _sgd(model: nn.Module, lr: float = 0.05) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.8, weight_decay=5e-4)


def test_off_by_default_the_closure_changes_nothing() -> None:
    batches = _batches(40)
    runs = []
    for kwargs, mode in (({}, "plain"), ({}, "closure"), ({"loss_guard": False}, "closure")):
        model = _model()
        opt = TLR(_sgd(model), update_every=3, rule="paper", **kwargs)  # a rule that reads no loss
        lrs = _train(model, opt, batches, mode=mode)
        runs.append((lrs, _flat(model), [r.as_dict() for r in opt.history], opt.state_dict()))
        saved = runs[-1][3]["param_groups"][0]
        assert not any(key.startswith("tlr_loss") or key == "tlr_prev_loss" for key in saved)
    for lrs, weights, history, state in runs[1:]:
        assert lrs == runs[0][0] and torch.equal(weights, runs[0][1]) and history == runs[0][2]
        assert state["param_groups"] == runs[0][3]["param_groups"]
    assert {r["status"] for r in runs[0][2]} & {"updated", "capped"}  # the rule did move the rate


def _run_1d(h: float, lr0: float, *, update_every: int, steps: int, loss_guard: bool):
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    inner = torch.optim.SGD([w], lr=lr0)
    opt = TLR(inner, update_every=update_every, rule="paper", gamma=GAMMA, loss_guard=loss_guard)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (0.5 * h * w.pow(2)).sum()
        loss.backward()
        return loss

    used = []
    for _ in range(steps):
        used.append(opt.get_lr()[0])
        opt.step(closure)
    return opt, used, w.detach().item()


def test_a_falling_loss_leaves_the_rule_alone() -> None:
    """Far below 1/h the loss falls in every window: the guarded run is the unguarded one."""
    plain = _run_1d(4.0, 0.01, update_every=3, steps=30, loss_guard=False)
    guarded = _run_1d(4.0, 0.01, update_every=3, steps=30, loss_guard=True)
    assert guarded[1] == plain[1] and guarded[2] == plain[2]
    assert [r.status for r in guarded[0].history] == [r.status for r in plain[0].history]
    assert plain[1][-1] > 0.01  # the rule raised the rate


def test_even_windows_period_two_divergence_is_caught() -> None:
    """The unguarded rule keeps the rate (b - a < 0) while |w| grows by 1.5 per step
    (tests/test_known_answers.py pins that); the guard sees the loss rise and shrinks the rate."""
    h, steps = 4.0, 60
    opt, used, w = _run_1d(h, 2.5 / h, update_every=2, steps=steps, loss_guard=False)
    assert used[-1] == 2.5 / h and abs(w) > 1e3
    opt, used, w = _run_1d(h, 2.5 / h, update_every=2, steps=steps, loss_guard=True)
    statuses = [r.status for r in opt.history]
    assert statuses[1] == "loss_guard" and opt.history[1].factor == pytest.approx(1.0 - GAMMA)
    assert used[-1] < 2.0 / h  # back in the stable range
    assert abs(w) < 1.0  # and the iterate converged instead of diverging


def _quadratic_tlr(**kwargs):
    w = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = TLR(
        torch.optim.SGD([w], lr=1e-3), update_every=4, rule="paper", gamma=GAMMA, loss_guard=True, **kwargs
    )
    return w, opt


def _step_with_loss(w: nn.Parameter, opt: TLR, reported: float) -> None:
    opt.zero_grad()
    (0.5 * w.pow(2)).sum().backward()
    opt.observe_loss(reported)
    opt.step()


@pytest.mark.parametrize(
    ("second_window", "expected"),
    [([2.0] * 4, 1.0 - GAMMA), ([0.0, 4.0, 0.0, 4.0], 1.0)],  # a clear rise shrinks, a noisy one holds
)
def test_a_rising_loss_overrules_the_newton_increase(second_window: list[float], expected: float) -> None:
    """At lr 1e-3 on a quadratic the rule wants a large increase; the reported window losses rise."""
    w, opt = _quadratic_tlr()
    for reported in [1.0] * 4 + second_window + [1.0] * 4:
        _step_with_loss(w, opt, reported)
    first, second, third = opt.history
    assert first.status == "first_window"
    assert (second.status, second.factor) == ("loss_guard", pytest.approx(expected))
    assert third.status in ("updated", "capped") and third.factor > 1.0  # the loss fell again


def test_a_window_without_losses_is_not_guarded() -> None:
    """Window 2 sees no loss, so window 3 (loss 100 after window 1's 1) has nothing to compare with."""
    runs = []
    for guard in (False, True):
        w = nn.Parameter(torch.ones(3, dtype=torch.float64))
        opt = TLR(torch.optim.SGD([w], lr=1e-3), update_every=4, rule="paper", gamma=GAMMA, loss_guard=guard)
        for t in range(12):
            opt.zero_grad()
            (0.5 * w.pow(2)).sum().backward()
            if guard and not 4 <= t < 8:
                opt.observe_loss(1.0 if t < 4 else 100.0)
            opt.step()
        runs.append([(r.status, r.factor) for r in opt.history])
    assert runs[1] == runs[0]
    assert runs[0][2][1] > 1.0  # window 3 raised the rate: a guard comparing it with window 1 would not


def test_closure_and_observe_loss_agree() -> None:
    batches = _batches(30)
    runs = []
    for mode in ("closure", "observe", "observe_float"):
        model = _model()
        opt = TLR(_sgd(model, lr=0.5), update_every=3, rule="paper", loss_guard=True, loss_guard_z=0.0)
        lrs = _train(model, opt, batches, mode=mode)
        runs.append((lrs, _flat(model), [(r.status, r.factor) for r in opt.history]))
    assert any(status == "loss_guard" for status, _ in runs[0][2])  # the guard did act
    for lrs, weights, history in runs[1:]:
        assert lrs == runs[0][0] and torch.equal(weights, runs[0][1]) and history == runs[0][2]


@pytest.mark.parametrize(("rule", "loss_guard"), [("paper", True), ("robust", False), ("robust", True)])
# A rollback clears the momentum and makes the other state finite (RMSprop's square_avg and step): no sync.
@pytest.mark.parametrize("inner", ["sgd", "rmsprop"])
@pytest.mark.parametrize("mode", ["closure", "observe"])
def test_one_host_sync_per_meta_step_for_all_groups(
    host_reads, mode: str, inner: str, rule: str, loss_guard: bool
) -> None:
    model = _model()
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}]
    make = {
        "sgd": lambda: torch.optim.SGD(groups, lr=0.05, momentum=0.8),
        "rmsprop": lambda: torch.optim.RMSprop(groups, lr=0.01, momentum=0.8),
    }[inner]
    opt = TLR(make(), update_every=3, rule=rule, loss_guard=loss_guard)
    # The robust rule's windows last the momentum's horizon: 5 steps.
    length = getattr(opt.rule, "window_length", lambda k, group: k)
    window = max(length(opt.update_every, group) for group in opt.param_groups)
    batches = _batches(4 * window)
    counter = host_reads()
    meta_steps = 0
    for step, (x, y) in enumerate(batches):
        # The third window's loss jumps: the guard acts, the robust rule rolls the window back.
        scale = 100.0 if 2 * window <= step < 3 * window else 1.0

        def closure(x=x, y=y, scale=scale) -> torch.Tensor:
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            return loss * scale

        before = counter.calls
        if mode == "closure":
            opt.step(closure)
        else:
            opt.observe_loss(closure())
            opt.step()
        meta_steps += opt.group_meta[0].window_steps == 0
        assert counter.calls - before == (1 if opt.group_meta[0].window_steps == 0 else 0)
    assert meta_steps == 4 and len(opt.history) == 8
    assert {r.status for r in opt.history[4:6]} == {"rollback" if rule == "robust" else "loss_guard"}


def _guarded_pair(seed: int = 0):
    model = _model(seed)
    return model, TLR(_sgd(model, lr=0.5), update_every=3, rule="paper", loss_guard=True, loss_guard_z=0.0)


def test_state_dict_round_trip_mid_window() -> None:
    batches = _batches(20)
    model, opt = _guarded_pair()
    _train(model, opt, batches[:7], mode="closure")  # 7 = two windows and one step into the third
    group = opt.state_dict()["param_groups"][0]
    assert group["tlr_loss_count"] == 1 and group["tlr_prev_loss"] is not None
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    kept = opt.state_dict()
    saved = copy.deepcopy(kept)

    expected_lrs = _train(model, opt, batches[7:], mode="closure")
    # A state dict kept around is not changed by training on (the live sums are added to in place).
    assert not torch.equal(
        opt.state_dict()["param_groups"][0]["tlr_loss_sum"], saved["param_groups"][0]["tlr_loss_sum"]
    )
    assert torch.equal(kept["param_groups"][0]["tlr_loss_sum"], saved["param_groups"][0]["tlr_loss_sum"])

    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=False)
    resumed_model, resumed = _guarded_pair(seed=5)  # different initial weights: all must come from disk
    resumed_model.load_state_dict(checkpoint["model"])
    resumed.load_state_dict(checkpoint["opt"])
    lrs = _train(resumed_model, resumed, batches[7:], mode="closure")
    assert lrs == expected_lrs
    assert torch.equal(_flat(resumed_model), _flat(model))
    assert [(r.status, r.factor) for r in resumed.history] == [
        (r.status, r.factor) for r in opt.history[len(opt.history) - len(resumed.history) :]
    ]
    assert any(r.status == "loss_guard" for r in opt.history)


def test_a_loaded_state_dict_is_not_written_through() -> None:
    model, opt = _guarded_pair()
    _train(model, opt, _batches(4), mode="closure")
    state = opt.state_dict()
    snapshot = state["param_groups"][0]["tlr_loss_sum"].clone()
    opt.load_state_dict(state)
    _train(model, opt, _batches(2), mode="closure")
    assert torch.equal(state["param_groups"][0]["tlr_loss_sum"], snapshot)


# -- validation ----------------------------------------------------------------------------------------
def _opt(**kwargs) -> TLR:
    return TLR(torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1), update_every=2, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"loss_guard": 1}, TypeError, "loss_guard"),
        ({"loss_guard": "yes"}, TypeError, "loss_guard"),
        ({"loss_guard": True, "loss_guard_tolerance": "0.1"}, TypeError, "loss_guard_tolerance"),
        ({"loss_guard": True, "loss_guard_tolerance": -0.1}, ValueError, "loss_guard_tolerance"),
        ({"loss_guard": True, "loss_guard_tolerance": math.inf}, ValueError, "loss_guard_tolerance"),
        ({"loss_guard": True, "loss_guard_z": None}, TypeError, "loss_guard_z"),
        ({"loss_guard": True, "loss_guard_z": math.nan}, ValueError, "loss_guard_z"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, name) -> None:
    with pytest.raises(error, match=name):
        _opt(**kwargs)


def test_observe_loss_where_nothing_reads_it_warns_once_and_ignores_it() -> None:
    # A rule that reads no loss, in a loop written for one that does (the README's, with rule="paper").
    opt = _opt(rule="paper")
    with pytest.warns(RuntimeWarning, match="loss is ignored") as caught:
        opt.observe_loss(1.0)
        opt.observe_loss(2.0)
    assert len(caught) == 1 and caught[0].filename == __file__  # once, pointing at the call
    assert not opt._step_losses
    with pytest.raises(TypeError, match="loss"):
        opt.observe_loss("1.0")  # type: ignore[arg-type]  # still checked
    _opt(rule="robust").observe_loss(1.0)  # one that does takes it without the guard


@pytest.mark.parametrize(
    ("loss", "error"), [("1.0", TypeError), (None, TypeError), (True, TypeError), (torch.ones(3), ValueError)]
)
def test_observe_loss_rejects_what_is_not_a_scalar_loss(loss, error) -> None:
    with pytest.raises(error, match="loss"):
        _opt(loss_guard=True).observe_loss(loss)


def test_a_closure_returning_something_else_is_an_error() -> None:
    opt = _opt(loss_guard=True)
    with pytest.raises(TypeError, match="closure"):
        opt.step(lambda: "not a loss")


def test_repr_shows_the_guard_only_when_on() -> None:
    assert "loss_guard" not in repr(_opt())
    assert "loss_guard=True" in repr(_opt(loss_guard=True, loss_guard_tolerance=0.05))
