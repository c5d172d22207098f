"""``TLR`` keeps the ``torch.optim.Optimizer`` contract: schedulers, GradScaler, hooks, state dicts, ...

The generic checks run over every optimizer the repository builds on TLR (the table in
``tests/optim_db.py``); the others are about TLR's own behaviour and use one inner optimizer.
"""

from __future__ import annotations

import copy
import inspect
import io
import math
import pickle
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler
from torch.optim import optimizer as optimizer_module

import ntlr
from ntlr import TLR
from ntlr.rules import rule_state_pairs
from optim_db import OPTIM_DB, TLRInfo, parametrize_over_optim_db

K = 3
TLR_STATE_KEYS = {"tlr_snapshot", "tlr_prev_update"}
over_optim_db = parametrize_over_optim_db()
# For contracts every rule keeps, checked on one inner optimizer: each rule's windows close (the robust
# rule's last at least the momentum's horizon: _longest_window).
over_rules = pytest.mark.parametrize("rule", sorted(ntlr.RULES))


def _model(dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to(dtype)


def _batches(n: int, dtype: torch.dtype = torch.float32, seed: int = 1) -> list[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 4, generator=gen).to(dtype), torch.randn(16, 2, generator=gen).to(dtype))
        for _ in range(n)
    ]


def _loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    x, y = batch
    return (model(x) - y).pow(2).mean()


def _two_groups(model: nn.Module, lr0: float = 0.05, lr1: float = 0.02) -> list[dict]:
    return [{"params": model[0].parameters(), "lr": lr0}, {"params": model[2].parameters(), "lr": lr1}]


def _observe(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Feed the loss to a TLR that reads it (its rule or loss guard), as a training loop must."""
    if isinstance(opt, TLR) and opt.observes_loss:
        opt.observe_loss(loss)


def _train(opt: torch.optim.Optimizer, model: nn.Module, batches, scheduler=None) -> None:
    for batch in batches:
        opt.zero_grad()
        loss = _loss(model, batch)
        loss.backward()
        _observe(opt, loss)
        opt.step()
        if scheduler is not None:
            scheduler.step()


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _longest_window(opt: TLR) -> int:
    """The longest window of any group in steps (a rule may make them longer than update_every)."""
    length = getattr(opt.rule, "window_length", None)
    if length is None:
        return opt.update_every
    return max(length(opt.update_every, group) for group in opt.param_groups)


def _bare_inner(opt: TLR, groups: list[dict]) -> torch.optim.Optimizer:
    """A fresh optimizer of the inner's class and defaults (those its constructor takes), without TLR."""
    cls = type(opt.optimizer)
    accepted = inspect.signature(cls).parameters
    return cls(groups, **{k: v for k, v in opt.optimizer.defaults.items() if k in accepted})


def _assert_same_group_entries(saved: dict, kept: dict) -> None:
    assert set(saved) == set(kept)
    for key, value in saved.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, kept[key]), key
        else:
            assert value == kept[key], key


# -- the table ---------------------------------------------------------------------------------------------
def test_the_table_holds_every_optimizer_built_on_tlr() -> None:
    names = {info.name for info in OPTIM_DB}
    assert len(names) == len(OPTIM_DB)
    for expected in ("sgd_momentum", "adam", "adamw", "rmsprop", "rule_paper", "rule_robust"):
        assert expected in names
    for bench in ("tlr_sgd", "tlr_adam", "hypergrad_add", "hypergrad_mult"):
        assert f"bench_{bench}" in names
    rules = {info.name: info(_two_groups(_model()), K).rule.name for info in OPTIM_DB}
    assert rules["rule_paper"] == "paper" and rules["rule_robust"] == "robust"


# -- identity --------------------------------------------------------------------------------------------
@over_optim_db
def test_is_an_optimizer(info: TLRInfo) -> None:
    opt = info(_two_groups(_model()), K)
    assert isinstance(opt, torch.optim.Optimizer) and isinstance(opt, TLR)


@over_optim_db
def test_param_groups_state_defaults_are_the_inner_live_objects(info: TLRInfo) -> None:
    model = _model()
    opt = info(_two_groups(model), K)
    inner = opt.optimizer
    # The inner optimizer's groups, each through a live view that adds TLR's entries read-only; the inner
    # groups themselves hold hyper-parameters only (TLR's state is opt.group_meta).
    assert opt.param_groups is opt.param_groups
    assert [view.group for view in opt.param_groups] == inner.param_groups
    assert all(view["params"] is group["params"] for view, group in zip(opt.param_groups, inner.param_groups))
    assert not any(key.startswith("tlr_") for group in inner.param_groups for key in group)
    assert all(view["tlr_factor"] == 1.0 for view in opt.param_groups)
    with pytest.raises(KeyError, match="group_meta"):
        opt.param_groups[0]["tlr_factor"] = 2.0
    assert opt.state is inner.state
    assert opt.defaults is inner.defaults
    _train(opt, model, _batches(2))
    assert opt.state is inner.state and len(inner.state) == 4
    assert TLR_STATE_KEYS < set(opt.state[model[0].weight])  # beside the inner's own
    inner.param_groups[0]["lr"] = 0.5
    assert opt.param_groups[0]["lr"] == 0.5
    assert opt.get_lr()[0] == 0.5 * opt.group_meta[0].factor
    opt.param_groups[1]["lr"] = 0.25
    assert inner.param_groups[1]["lr"] == 0.25


def test_every_attribute_of_a_fresh_optimizer_exists_on_tlr() -> None:
    """A torch upgrade that adds an attribute in Optimizer.__init__ must be mirrored by TLR.__init__."""
    model = _model()
    fresh = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.1), update_every=K)
    own = set(vars(opt))
    properties = {n for n in dir(type(opt)) if isinstance(getattr(type(opt), n, None), property)}
    missing = [name for name in vars(fresh) if name not in own and name not in properties]
    assert not missing, f"TLR lacks attributes that Optimizer.__init__ sets: {missing}"
    for name in vars(fresh):
        if name.startswith("_optimizer_") and name.endswith("_hooks"):
            assert getattr(opt, name) is not getattr(opt.optimizer, name), name


# -- LR schedulers ---------------------------------------------------------------------------------------
SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer, int], lr_scheduler.LRScheduler]] = {
    "lambda_warmup": lambda o, n: lr_scheduler.LambdaLR(o, lambda t: min(1.0, (t + 1) / 5)),
    "onecycle": lambda o, n: lr_scheduler.OneCycleLR(o, max_lr=[0.1, 0.04], total_steps=n),
    "step": lambda o, n: lr_scheduler.StepLR(o, step_size=4, gamma=0.5),
    "multistep": lambda o, n: lr_scheduler.MultiStepLR(o, milestones=[5, 11, 17], gamma=0.3),
    "exponential": lambda o, n: lr_scheduler.ExponentialLR(o, gamma=0.95),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
@over_optim_db
def test_schedulers_compose(name: str, info: TLRInfo) -> None:
    """effective lr (what the inner step sees) == schedule(t) × trained factor, and get_lr() says so."""
    model = _model()
    opt = info(_two_groups(model), K)
    n = max(24, 6 * _longest_window(opt))  # a few windows, also where a rule lengthens them
    make = SCHEDULERS[name]

    # The schedule alone, on a bare optimizer that nothing else touches.
    dummy = torch.optim.SGD(_two_groups(_model()), momentum=0.9)
    dummy_sched = make(dummy, n)
    schedule = []
    for _ in range(n):
        schedule.append([g["lr"] for g in dummy.param_groups])
        dummy.step()
        dummy_sched.step()

    inner = opt.optimizer
    sched = make(opt, n)
    seen: list[list[float]] = []
    inner.register_step_pre_hook(lambda o, args, kwargs: seen.append([g["lr"] for g in o.param_groups]))
    factors, reported, last = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for batch in _batches(n):
            factors.append([m.factor for m in opt.group_meta])
            reported.append(opt.get_lr())
            last.append(sched.get_last_lr())
            _train(opt, model, [batch])
            sched.step()

    # Under a decaying schedule the rule's climbs are held (status schedule_hold): that is training too.
    trained = any(f != 1.0 for fs in factors for f in fs) or any(
        r.status == "schedule_hold" for r in opt.history
    )
    assert trained, "the rate was never trained: test is vacuous"
    for t in range(n):
        expected = [s * f for s, f in zip(schedule[t], factors[t])]
        assert seen[t] == pytest.approx(expected, rel=1e-15), t
        assert reported[t] == pytest.approx(expected, rel=1e-15), t
        assert last[t] == pytest.approx(schedule[t], rel=1e-15), t  # the scheduler sees its own rate
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [g["lr"] for g in dummy.param_groups], rel=1e-15
    )


# -- GradScaler -----------------------------------------------------------------------------------------
def test_grad_scaler_unscales_and_skips_inf_steps_without_counting_them() -> None:
    model = _model()
    reference = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=K)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    batches = _batches(8)
    for t, batch in enumerate(batches):
        opt.zero_grad()
        scaler.scale(_loss(model, batch)).backward()
        if t == 4:
            model[0].weight.grad[0, 0] = math.inf
        scaler.unscale_(opt)
        if t != 4:
            reference.load_state_dict(model.state_dict())
            reference.zero_grad()
            _loss(reference, batch).backward()
            for p, q in zip(model.parameters(), reference.parameters()):
                torch.testing.assert_close(p.grad, q.grad)  # unscale_ reached the inner's params
        before = _flat(model)
        steps_before = opt.group_meta[0].steps
        scale = scaler.get_scale()
        scaler.step(opt)
        scaler.update()
        if t == 4:
            assert torch.equal(_flat(model), before), "the inf step was not skipped"
            assert opt.group_meta[0].steps == steps_before, "a skipped step was counted"
            assert scaler.get_scale() == scale / 2
        else:
            assert not torch.equal(_flat(model), before)
            assert opt.group_meta[0].steps == steps_before + 1
    assert opt.group_meta[0].steps == 7
    assert [r.step for r in opt.history] == [3, 6]
    assert all(math.isfinite(lr) and lr > 0 for lr in opt.get_lr())


# -- small API -------------------------------------------------------------------------------------------
@over_optim_db
def test_zero_grad(info: TLRInfo) -> None:
    model = _model()
    opt = info(_two_groups(model), K)
    _loss(model, _batches(1)[0]).backward()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    _loss(model, _batches(1)[0]).backward()
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@over_optim_db
def test_add_param_group_trains_its_own_rate(info: TLRInfo) -> None:
    model = _model()
    opt = info([{"params": model[0].parameters(), "lr": 0.05}], K)
    window = _longest_window(opt)
    batches = _batches(2 * K + 4 * window)
    _train(opt, model, batches[: 2 * K])
    opt.add_param_group({"params": model[2].parameters(), "lr": 0.01})
    new, meta = opt.param_groups[1], opt.group_meta[1]
    assert (meta.factor, meta.steps, meta.meta_steps) == (1.0, 0, 0)
    assert new["lr"] == 0.01
    assert all(new[key] == value for key, value in opt.defaults.items() if key != "lr")  # inner's defaults
    before = model[2].weight.detach().clone()
    _train(opt, model, batches[2 * K :])
    assert not torch.equal(model[2].weight, before)
    assert meta.steps == 4 * window
    records = [r for r in opt.history if r.group == 1]
    assert records[0].status == "first_window"
    assert len(records) >= 3 and meta.meta_steps == len(records)
    assert TLR_STATE_KEYS <= set(opt.state[model[2].weight])
    assert meta.factor != 1.0 and meta.factor != opt.group_meta[0].factor


def test_param_groups_changed_in_place_reach_the_inner_optimizer_and_keep_their_records() -> None:
    # As with a plain optimizer's list: code that appends to, deletes from or reorders param_groups.
    model = _model()
    inner = torch.optim.SGD(model[0].parameters(), lr=0.05)
    opt = TLR(inner, update_every=K)
    batches = _batches(8 * K)
    _train(opt, model, batches[: 2 * K])
    first = opt.group_meta[0]
    assert first.meta_steps >= 1
    opt.param_groups.append({**inner.defaults, "params": list(model[2].parameters()), "lr": 0.01})
    assert len(inner.param_groups) == 2 and inner.param_groups[1]["lr"] == 0.01
    assert opt.group_meta[0] is first and opt.group_meta[1].meta_steps == 0
    _train(opt, model, batches[2 * K : 6 * K])
    assert any(r.group == 1 for r in opt.history)
    second = opt.group_meta[1]
    second.factor = 7.0
    for copied in (copy.copy(opt.param_groups), copy.deepcopy(opt.param_groups)):
        # A copy is a plain list: changing it changes nothing, and making it dropped no record.
        assert type(copied) is list and len(copied) == 2
        copied.pop()
    assert len(inner.param_groups) == 2 and opt.group_meta == [first, second] and second.factor == 7.0
    groups = opt.param_groups
    groups.reverse()
    assert inner.param_groups[0]["lr"] == 0.01 and opt.group_meta == [second, first]
    groups.reverse()  # a second change through the same list finds each record where it now is
    assert inner.param_groups[0]["lr"] == 0.05 and opt.group_meta == [first, second]
    assert groups is opt.param_groups and [v.index for v in groups] == [0, 1]
    opt.param_groups.reverse()
    del opt.param_groups[0]
    assert len(inner.param_groups) == 1 and opt.group_meta == [first]
    assert opt.param_groups[0]["params"][0] is model[0].weight
    _train(opt, model, batches[6 * K :])
    assert first.meta_steps >= 3


@over_optim_db
def test_step_hooks_registered_on_the_wrapper_fire(info: TLRInfo) -> None:
    model = _model()
    opt = info(_two_groups(model), K)
    calls = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o)))
    post = opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o)))
    _train(opt, model, _batches(2))
    assert calls == [("pre", opt), ("post", opt)] * 2
    pre.remove()
    post.remove()
    _train(opt, model, _batches(1))
    assert len(calls) == 4


@over_optim_db
def test_global_step_hooks_fire_once_per_step_with_the_wrapper(info: TLRInfo) -> None:
    """torch.optim's global step hooks see one step of the TLR, not a second one of its inner optimizer."""
    model = _model()
    opt = info(_two_groups(model), K)
    inner = opt.optimizer
    other_model = _model(seed=5)
    other = torch.optim.SGD(other_model.parameters(), lr=0.1)  # a plain optimizer stepped mid-step
    calls: list[tuple[str, object, int]] = []

    def record(what: str):
        return lambda o, args, kwargs: calls.append((what, o, len(opt.history)))

    def step_other(o, args, kwargs) -> None:
        record("inner_post")(o, args, kwargs)
        other.step()

    handles = [
        optimizer_module.register_optimizer_step_pre_hook(record("global_pre")),
        optimizer_module.register_optimizer_step_post_hook(record("global_post")),
        opt.register_step_pre_hook(record("tlr_pre")),
        opt.register_step_post_hook(record("tlr_post")),
        inner.register_step_pre_hook(record("inner_pre")),
        inner.register_step_post_hook(step_other),
    ]
    global_hooks = [
        dict(optimizer_module._global_optimizer_pre_hooks),
        dict(optimizer_module._global_optimizer_post_hooks),
    ]
    try:
        for p in other_model.parameters():
            p.grad = torch.ones_like(p)
        n = _longest_window(opt) + 1
        history_lengths = []
        for batch in _batches(n):
            _train(opt, model, [batch])
            history_lengths.append(len(opt.history))
        one_step = [
            ("global_pre", opt),
            ("tlr_pre", opt),
            ("inner_pre", inner),
            ("inner_post", inner),
            ("global_pre", other),  # another optimizer's step still fires the global hooks
            ("global_post", other),
            ("tlr_post", opt),
            ("global_post", opt),
        ]
        assert [(what, o) for what, o, _ in calls] == one_step * n
        # The pre hooks run before the step, the post hooks after the meta-step that may close a window.
        assert history_lengths[-1] > 0, "no meta-step: test is vacuous"
        for t in range(n):
            step_calls = calls[8 * t : 8 * (t + 1)]
            assert step_calls[0][2] == (history_lengths[t - 1] if t else 0)
            assert step_calls[-1][2] == history_lengths[t]
        # The global hooks are the user's own again, also after an inner step that raised.
        assert dict(optimizer_module._global_optimizer_pre_hooks) == global_hooks[0]
        assert dict(optimizer_module._global_optimizer_post_hooks) == global_hooks[1]
        failing = inner.register_step_pre_hook(lambda *a: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            opt.step()
        failing.remove()
        assert dict(optimizer_module._global_optimizer_pre_hooks) == global_hooks[0]
        assert dict(optimizer_module._global_optimizer_post_hooks) == global_hooks[1]
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("attach", ["nothing", "inner_hook", "scheduler", "instance_step", "profiler"])
def test_the_inner_step_skips_torchs_wrapper_only_where_that_skips_nothing_attached(attach: str) -> None:
    """Nothing attached to the inner optimizer: its class's unwrapped step (the wrapper would add only the
    global hooks, skipped for it anyway, and an unrecorded profiler range); anything attached, or a
    profiler recording: ``inner.step``, so that it still runs. The global hooks fire once a step, for the
    TLR, either way."""
    from ntlr.tlr import _unwrapped_step

    model = _model()
    inner = torch.optim.SGD(_two_groups(model), lr=0.05, momentum=0.9)
    opt = TLR(inner, update_every=K)
    fired: list[str] = []
    scheduler = None
    if attach == "inner_hook":
        inner.register_step_post_hook(lambda o, args, kwargs: fired.append("inner_post"))
    elif attach == "scheduler":
        scheduler = lr_scheduler.StepLR(inner, step_size=1, gamma=0.5)  # counts the inner's steps
    elif attach == "instance_step":
        plain = inner.step
        inner.step = lambda *args, **kwargs: (fired.append("instance"), plain(*args, **kwargs))[1]  # type: ignore[method-assign]
    seen: list[object] = []
    handle = optimizer_module.register_optimizer_step_post_hook(lambda o, args, kwargs: seen.append(o))
    try:
        if attach == "profiler":
            with torch.profiler.profile() as prof:
                assert _unwrapped_step(inner) is None
                _train(opt, model, _batches(2), scheduler)
            names = {event.name for event in prof.events()}
            assert "Optimizer.step#SGD.step" in names and "Optimizer.step#TLR.step" in names
        else:
            assert (_unwrapped_step(inner) is None) == (attach != "nothing")
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a scheduler that missed the inner's step warns
                _train(opt, model, _batches(2), scheduler)
    finally:
        handle.remove()
    assert seen == [opt, opt]
    expected = {"inner_hook": ["inner_post"] * 2, "instance_step": ["instance"] * 2}
    assert fired == expected.get(attach, [])
    if scheduler is not None:
        assert inner.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**2)


class _CountingZeroGrad(torch.optim.SGD):
    calls = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        type(self).calls += 1
        super().zero_grad(set_to_none)


@pytest.mark.parametrize("attach", ["nothing", "subclass", "instance", "profiler", "keep_zeros"])
def test_zero_grad_skips_torchs_wrapper_only_where_that_skips_nothing(attach: str) -> None:
    """TLR.zero_grad sets the grads to None itself only where the inner's zero_grad is torch's own and
    nothing would see the difference; an override (in the class or on the instance) runs, a recording
    profiler shows the inner's range, ``set_to_none=False`` zeroes in place as torch does."""
    from ntlr.tlr import _plain_zero_grad

    model = _model()
    _CountingZeroGrad.calls = 0
    inner_type = _CountingZeroGrad if attach == "subclass" else torch.optim.SGD
    inner = inner_type(_two_groups(model), lr=0.05, momentum=0.9)
    opt = TLR(inner, update_every=K)
    calls: list[bool] = []
    if attach == "instance":
        plain = inner.zero_grad
        inner.zero_grad = lambda set_to_none=True: (calls.append(set_to_none), plain(set_to_none))[1]  # type: ignore[method-assign]
    _loss(model, _batches(1)[0]).backward()
    assert _plain_zero_grad(inner) == (attach in ("nothing", "keep_zeros", "profiler"))
    if attach == "profiler":
        with torch.profiler.profile() as prof:
            assert not _plain_zero_grad(inner)
            opt.zero_grad()
        assert "Optimizer.zero_grad#SGD.zero_grad" in {event.name for event in prof.events()}
    else:
        opt.zero_grad(set_to_none=attach != "keep_zeros")
    if attach == "keep_zeros":
        assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    else:
        assert all(p.grad is None for p in model.parameters())
    assert _CountingZeroGrad.calls == (attach == "subclass")
    assert calls == ([True] if attach == "instance" else [])


@over_optim_db
def test_step_with_closure_calls_it_once_and_returns_its_loss(info: TLRInfo) -> None:
    model = _model()
    opt = info(_two_groups(model), K)
    batch = _batches(1)[0]
    calls = []

    def closure() -> torch.Tensor:
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = _loss(model, batch)
        loss.backward()
        calls.append(loss)
        return loss

    before = _flat(model)
    with torch.no_grad():
        result = opt.step(closure)
    assert len(calls) == 2 and calls[0] is True  # once, with grad enabled (the inner step's doing)
    assert result is calls[1]
    assert not torch.equal(_flat(model), before)
    assert opt.group_meta[0].steps == 1


@over_optim_db
@pytest.mark.filterwarnings(r"ignore:TLR\(loss_guard=True\) saw no loss in a window")
def test_steps_without_any_grad_do_nothing(info: TLRInfo) -> None:
    """step() before any backward (no param has a grad) moves nothing, through meta-steps, and crashes not."""
    model = _model()
    opt = info(_two_groups(model), K)
    before = _flat(model)
    for _ in range(3 * _longest_window(opt)):
        opt.step()
    assert torch.equal(_flat(model), before)
    assert all(math.isfinite(lr) and lr > 0 for lr in opt.get_lr())
    assert not any(TLR_STATE_KEYS & set(opt.state.get(p, {})) for p in model.parameters())
    _train(opt, model, _batches(2 * K))  # and training then starts as usual
    assert not torch.equal(_flat(model), before)
    assert all(TLR_STATE_KEYS <= set(opt.state[p]) for p in model.parameters())


class _ScheduleFreeLike(torch.optim.SGD):
    """An optimizer with train()/eval() modes, like schedule-free ones."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.modes: list[str] = []

    def train(self) -> None:
        self.modes.append("train")

    def eval(self) -> None:
        self.modes.append("eval")


def test_train_eval_forwarded_when_the_inner_has_them() -> None:
    inner = _ScheduleFreeLike(_model().parameters(), lr=0.1)
    opt = TLR(inner, update_every=K)
    opt.eval()
    opt.train()
    assert inner.modes == ["eval", "train"]

    plain = TLR(torch.optim.SGD(_model().parameters(), lr=0.1), update_every=K)
    with pytest.raises(AttributeError):
        plain.train()
    with pytest.raises(AttributeError):
        plain.eval()
    assert not hasattr(plain, "no_such_attribute")


# -- state dicts ----------------------------------------------------------------------------------------
@over_optim_db
def test_state_dict_has_the_standard_format(info: TLRInfo) -> None:
    model = _model()
    opt = info(_two_groups(model), K)
    n = 2 * _longest_window(opt) + 1
    _train(opt, model, _batches(n))
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == [0, 1, 2, 3]
    # The inner optimizer's own per-param state, and TLR's two buffers beside it.
    bare_model = _model()
    bare = _bare_inner(opt, _two_groups(bare_model))
    _train(bare, bare_model, _batches(n))
    bare_sd = bare.state_dict()
    for index, param in enumerate(model.parameters()):
        param_state = sd["state"][index]
        assert set(param_state) == set(bare_sd["state"][index]) | TLR_STATE_KEYS
        assert param_state["tlr_snapshot"].shape == param.shape
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3]]
    for index, group in enumerate(sd["param_groups"]):
        for key in ("tlr_factor", "tlr_steps", "tlr_window_steps", "tlr_window_lr_sum", "tlr_meta_steps"):
            assert key in group
        records = [r for r in opt.history if r.group == index]
        assert group["tlr_steps"] == n and group["tlr_meta_steps"] == len(records) > 0
        assert group["tlr_window_steps"] == n - records[-1].step
    # A state dict loads into the bare inner optimizer too (the extra keys are ignored by it).
    _bare_inner(opt, _two_groups(_model())).load_state_dict(copy.deepcopy(sd))


@over_optim_db
def test_buffers_appear_only_after_the_inner_initialised_the_param(info: TLRInfo) -> None:
    """AdamW initialises a param's state on ``len(state) == 0``: our buffers must not get there first."""
    model = _model()
    opt = info([{"params": model.parameters(), "lr": 1e-2}], K)
    without_head = 2 * _longest_window(opt) + 1  # the head has no grads through a meta-step
    batches = _batches(without_head + 2 * K)
    head = model[2]
    for t, (x, y) in enumerate(batches):
        opt.zero_grad()
        if t < without_head:  # only the first layer gets grads
            loss = model[0](x).pow(2).mean()
        else:
            loss = _loss(model, (x, y))
        loss.backward()
        _observe(opt, loss)
        before = head.weight.detach().clone()
        opt.step()
        if t < without_head:
            assert head.weight not in opt.state or not opt.state[head.weight]
            assert torch.equal(head.weight, before)
            sd = opt.state_dict()  # and a checkpoint in that state loads
            info([{"params": _model().parameters(), "lr": 1e-2}], K).load_state_dict(sd)
        else:
            assert TLR_STATE_KEYS < set(opt.state[head.weight])  # with the inner's own
            assert not torch.equal(head.weight, before)
    assert opt.history and all(math.isfinite(r.a) and math.isfinite(r.b) for r in opt.history)


@over_optim_db
def test_state_dict_does_not_alias_live_state(info: TLRInfo) -> None:
    model = _model()
    opt = info(_two_groups(model), K)
    _train(opt, model, _batches(K + 1))
    sd = opt.state_dict()
    kept = copy.deepcopy(sd)
    # Through meta-steps, which rewrite buffers (and the loss sums) in place.
    _train(opt, model, _batches(2 * _longest_window(opt), seed=2))
    for index in sd["state"]:
        for key in TLR_STATE_KEYS:
            assert torch.equal(sd["state"][index][key], kept["state"][index][key]), (index, key)
            assert sd["state"][index][key].data_ptr() != opt.state[model[0].weight][key].data_ptr()
    for saved, kept_group in zip(sd["param_groups"], kept["param_groups"]):
        _assert_same_group_entries(saved, kept_group)
    assert sd["param_groups"][0]["tlr_steps"] == K + 1 != opt.group_meta[0].steps
    sd["state"][0]["tlr_snapshot"] = None
    sd["param_groups"][0]["tlr_factor"] = -1.0
    sd["param_groups"][0]["tlr_rule_state"].append(["poison", -1.0])  # [key, value] pairs in a state dict
    assert opt.state[model[0].weight]["tlr_snapshot"] is not None
    assert opt.group_meta[0].factor > 0
    assert "poison" not in dict(rule_state_pairs(opt.group_meta[0].rule_state))


@over_optim_db
def test_state_dict_passes_entries_that_are_not_per_param_dicts_through(info: TLRInfo) -> None:
    """Optimizer.state_dict passes any ``state`` entry through, and hooks may write e.g. an int there."""
    model = _model()
    opt = info(_two_groups(model), K)
    opt.register_state_dict_pre_hook(lambda o: o.state.__setitem__("counter", 3))
    opt.register_state_dict_post_hook(lambda o, sd: sd["state"].__setitem__("global_step", 7))
    batches = _batches(K + 1 + 2 * _longest_window(opt))
    _train(opt, model, batches[: K + 1])
    sd = opt.state_dict()
    assert sd["state"]["counter"] == 3 and sd["state"]["global_step"] == 7
    assert TLR_STATE_KEYS < set(sd["state"][0])

    model_b = _model(seed=123)
    opt_b = info(_two_groups(model_b), K)
    model_b.load_state_dict(model.state_dict())
    opt_b.load_state_dict(_roundtrip(sd, "torch_save"))
    assert opt_b.state["counter"] == 3 and opt_b.state["global_step"] == 7
    assert opt_b.state_dict()["state"]["global_step"] == 7  # and it saves again
    _train(opt, model, batches[K + 1 :])
    _train(opt_b, model_b, batches[K + 1 :])
    assert opt_b.get_lr() == opt.get_lr()
    assert opt_b.history == [r for r in opt.history if r.step > K + 1] != []
    assert torch.equal(_flat(model_b), _flat(model))


def _roundtrip(sd: dict, how: str) -> dict:
    if how == "deepcopy":
        return copy.deepcopy(sd)
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only: the state dict holds nothing exotic


@pytest.mark.parametrize("how", ["deepcopy", "torch_save"])
@over_optim_db
@pytest.mark.parametrize("save_at", [0, 1, K - 1, K, K + 1, 2 * K, 2 * K + 2, 4 * K - 1])
def test_checkpoint_resume_continues_exactly(save_at: int, info: TLRInfo, how: str) -> None:
    n = 6 * K
    batches = _batches(n)

    def lrs_and_factors(opt):
        return opt.get_lr(), [m.factor for m in opt.group_meta]

    model = _model()
    opt = info(_two_groups(model), K)
    trace = []
    for batch in batches:
        _train(opt, model, [batch])
        trace.append(lrs_and_factors(opt))

    model_a = _model()
    opt_a = info(_two_groups(model_a), K)
    _train(opt_a, model_a, batches[:save_at])
    saved_model = _roundtrip(model_a.state_dict(), how)
    saved_opt = _roundtrip(opt_a.state_dict(), how)
    del model_a, opt_a

    model_b = _model(seed=123)  # different weights: everything must come from the checkpoint
    opt_b = info(_two_groups(model_b, lr0=9.0, lr1=9.0), K)
    model_b.load_state_dict(saved_model)
    opt_b.load_state_dict(saved_opt)
    resumed = []
    for batch in batches[save_at:]:
        _train(opt_b, model_b, [batch])
        resumed.append(lrs_and_factors(opt_b))

    assert resumed == trace[save_at:]
    assert torch.equal(_flat(model_b), _flat(model))
    tail = [r for r in opt.history if r.step > save_at]
    assert [(r.step, r.group, r.status, r.factor) for r in opt_b.history] == [
        (r.step, r.group, r.status, r.factor) for r in tail
    ]


# -- param layouts and dtypes ---------------------------------------------------------------------------
@over_rules
def test_params_without_grads_and_an_empty_group(rule: str) -> None:
    model = _model()
    unused = nn.Parameter(torch.ones(3))
    inner = torch.optim.SGD(
        [{"params": [*model.parameters(), unused]}, {"params": [], "lr": 0.3}], lr=0.05, momentum=0.9
    )
    opt = TLR(inner, update_every=K, rule=rule)
    _train(opt, model, _batches(4 * _longest_window(opt)))
    assert unused.grad is None and torch.equal(unused, torch.ones(3))
    assert "tlr_snapshot" not in opt.state.get(unused, {})
    assert opt.group_meta[0].factor != 1.0
    empty = [r for r in opt.history if r.group == 1]
    assert [r.status for r in empty] == ["first_window"] + ["nonpositive_denominator"] * 3
    assert opt.group_meta[1].factor == 1.0
    sd = copy.deepcopy(opt.state_dict())
    fresh = TLR(
        torch.optim.SGD(
            [{"params": [*_model().parameters(), nn.Parameter(torch.ones(3))]}, {"params": [], "lr": 0.3}],
            lr=0.05,
            momentum=0.9,
        ),
        update_every=K,
        rule=rule,
    )
    fresh.load_state_dict(sd)
    assert fresh.group_meta[0].factor == opt.group_meta[0].factor


def test_groups_with_different_lrs_train_different_factors() -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(_two_groups(model, lr0=0.2, lr1=0.001)), update_every=K)
    _train(opt, model, _batches(8 * K))
    f0, f1 = (m.factor for m in opt.group_meta)
    assert f0 != f1
    assert f1 > 1.0  # the tiny rate grows
    assert opt.get_lr() == [0.2 * f0, 0.001 * f1]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_low_and_high_precision_params(dtype: torch.dtype) -> None:
    model = _model(dtype)
    opt = TLR(torch.optim.SGD(_two_groups(model, lr0=0.01, lr1=0.01), momentum=0.9), update_every=K)
    _train(opt, model, _batches(8 * K, dtype))
    for param in model.parameters():
        assert param.dtype == dtype
        assert opt.state[param]["tlr_snapshot"].dtype == dtype
        assert opt.state[param]["tlr_prev_update"].dtype == dtype
    assert all(math.isfinite(r.a) and math.isfinite(r.b) for r in opt.history)
    assert {r.status for r in opt.history} & {"updated", "capped"}
    assert all(math.isfinite(lr) and lr > 0 for lr in opt.get_lr())


@over_rules
@pytest.mark.parametrize(("dtype", "rel"), [(torch.complex64, 1e-5), (torch.complex128, 1e-12)])
@pytest.mark.parametrize("inner", ["sgd_momentum", "adam"])
def test_complex_params_train_as_their_real_views(
    inner: str, dtype: torch.dtype, rel: float, rule: str
) -> None:
    """A complex parameter is its real view (Re<x, y>): the same model written either way trains one rate."""
    make = {
        "sgd_momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        "adam": lambda params: torch.optim.Adam(params, lr=0.01),
    }[inner]
    gen = torch.Generator().manual_seed(0)
    w0, b0 = torch.randn(2, 3, dtype=dtype, generator=gen), torch.randn(2, dtype=dtype, generator=gen)
    window = _longest_window(TLR(make([nn.Parameter(w0.clone())]), update_every=K, rule=rule))
    data = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(8, 3, dtype=dtype, generator=data), torch.randn(8, 2, dtype=dtype, generator=data))
        for _ in range(10 * window)
    ]

    def train(params: list[nn.Parameter], as_complex: Callable[[torch.Tensor], torch.Tensor]) -> TLR:
        opt = TLR(make(params), update_every=K, rule=rule)
        for x, y in batches:
            w, b = (as_complex(p) for p in params)
            opt.zero_grad()
            loss = (x @ w.T + b - y).abs().pow(2).mean()  # a real loss
            loss.backward()
            _observe(opt, loss)
            opt.step()
        return opt

    complex_params = [nn.Parameter(w0.clone()), nn.Parameter(b0.clone())]
    real_params = [nn.Parameter(torch.view_as_real(t).clone()) for t in (w0, b0)]
    opt_complex = train(complex_params, lambda p: p)
    opt_real = train(real_params, torch.view_as_complex)

    assert [r.status for r in opt_complex.history] == [r.status for r in opt_real.history]
    assert sum(r.status == "updated" for r in opt_real.history) >= 5, "the rate was hardly trained"
    assert [r.lr for r in opt_complex.history] == pytest.approx([r.lr for r in opt_real.history], rel=rel)
    assert all(r.b >= 0.0 for r in opt_complex.history)  # b = ||u_old||², not Σ u²
    for p, q in zip(complex_params, real_params):
        torch.testing.assert_close(torch.view_as_real(p.detach()), q.detach(), rtol=rel, atol=rel)


# -- history ----------------------------------------------------------------------------------------------
def test_history_records_first_window_then_rescales() -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(_two_groups(model), momentum=0.9), update_every=K, rule="paper")
    _train(opt, model, _batches(4 * K))
    assert len(opt.history) == 8
    assert [(r.step, r.group) for r in opt.history] == [(s, g) for s in (3, 6, 9, 12) for g in (0, 1)]
    first = opt.history[:2]
    assert all(r.status == "first_window" and r.factor == 1.0 and r.skipped for r in first)
    assert all(r.a == 0.0 and r.b == 0.0 for r in first)
    second = opt.history[2:4]
    assert all(r.b > 0 for r in second)
    factor = [1.0, 1.0]
    for record in opt.history:
        factor[record.group] *= record.factor
        base = (0.05, 0.02)[record.group]
        assert record.lr == pytest.approx(base * factor[record.group], rel=1e-15)
        fields = {"step", "group", "a", "b", "c", "factor", "lr", "status", "window_steps"}
        assert set(record.as_dict()) == fields
        assert record.window_steps == K
        if record.status == "updated":
            assert record.factor == pytest.approx(1 + 0.33 * record.a / (record.b - record.a), rel=1e-15)
            assert not record.skipped
    assert factor == pytest.approx([m.factor for m in opt.group_meta], rel=1e-15)


def test_skipped_means_the_rate_was_left_as_it_was() -> None:
    """A robust rule's ``nonpositive_denominator`` reads the loss and may change the rate (item 4): the
    record is then not ``skipped``; a first window, or the status with a factor of 1, is."""
    from ntlr import MetaStepRecord, Status

    def record(status: Status, factor: float) -> MetaStepRecord:
        return MetaStepRecord(step=1, group=0, a=1.0, b=1.0, factor=factor, lr=0.1, status=status)

    assert not record(Status.NONPOSITIVE_DENOMINATOR, 1.33).skipped
    assert record(Status.NONPOSITIVE_DENOMINATOR, 1.0).skipped
    assert record(Status.FIRST_WINDOW, 1.0).skipped and record(Status.NONFINITE, 1.0).skipped
    assert not record(Status.UPDATED, 1.0).skipped and not record(Status.ROLLBACK, 0.3).skipped


def test_history_capped_when_the_factor_hits_max_factor() -> None:
    model = _model(torch.float64)
    opt = TLR(torch.optim.SGD(model.parameters(), lr=1e-4), update_every=K, gamma=1.0, max_factor=3.0)
    # Full batch, tiny steps: consecutive updates nearly equal, a / (b - a) is huge.
    _train(opt, model, _batches(1, torch.float64) * (3 * K))
    assert [r.status for r in opt.history] == ["first_window", "capped", "capped"]
    assert [r.factor for r in opt.history] == [1.0, 3.0, 3.0]
    assert opt.group_meta[0].factor == 9.0
    assert not opt.history[1].skipped


def test_history_nonpositive_denominator_keeps_the_rate() -> None:
    """On L = -½‖w‖² the updates grow along the same direction: a ≥ b, the Newton step is undefined."""
    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = TLR(torch.optim.SGD([w], lr=0.1), update_every=3)
    for _ in range(12):
        opt.zero_grad()
        (-0.5 * w.pow(2).sum()).backward()
        opt.step()
    statuses = [r.status for r in opt.history]
    assert statuses == ["first_window"] + ["nonpositive_denominator"] * 3
    assert all(r.a >= r.b for r in opt.history[1:])
    assert opt.group_meta[0].factor == 1.0 and opt.get_lr() == [0.1]


@pytest.mark.parametrize("poison", ["nan", "inf", "huge"])
@pytest.mark.parametrize("foreach", [False, True])
def test_nonfinite_params_never_poison_the_rate(poison: str, foreach: bool) -> None:
    model = _model()
    inner = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt = TLR(inner, update_every=K, foreach=foreach, rule="paper")
    batches = _batches(6 * K)
    _train(opt, model, batches[: 2 * K + 1])
    factor = opt.group_meta[0].factor
    with torch.no_grad():
        model[0].weight[0, 0] = {"nan": math.nan, "inf": math.inf, "huge": 3e38}[poison]
    for batch in batches[2 * K + 1 :]:
        opt.zero_grad()
        _loss(model, batch).backward()
        opt.step()
        for lr in opt.get_lr():
            assert math.isfinite(lr) and lr > 0
    statuses = [r.status for r in opt.history[2:]]
    assert statuses[0] == "nonfinite"
    if poison == "nan":
        # NaN spreads to every weight: each later window starts non-finite as a whole, which the rule sees
        # (no tensor is left out of it), and the rate is kept.
        assert set(statuses) <= {"nonfinite", "nonpositive_denominator"}
        assert opt.group_meta[0].factor == factor
    elif poison == "inf":
        # tanh(inf) = 1: the inf weight stays (its gradient is 0) and the rest trains on. From the window
        # after the poisoned one, which started at that inf, it is left out and the rate trains on the rest.
        assert "nonfinite" not in statuses[1:]
        assert all(math.isfinite(r.a + r.b + r.c) for r in opt.history[3:])


@over_rules
def test_weights_that_overflow_both_ways_make_a_nonfinite_window_not_an_error(rule: str) -> None:
    # The per-tensor partial sums are added on the host with math.fsum, which raises on +inf and -inf
    # together: a run whose weights overflowed to both signs crashed in opt.step() (ValueError).
    p, q = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = TLR(torch.optim.SGD([p, q], lr=1.0), update_every=1, rule=rule)
    for grad_p, grad_q in [(-1.0, -1.0), (-1.0, -1.0), (math.inf, -math.inf)]:
        p.grad, q.grad = torch.tensor([grad_p]), torch.tensor([grad_q])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.step()
    last = opt.history[-1]
    assert not math.isfinite(last.a)
    assert last.status in ("nonfinite", "rollback")
    assert opt.get_lr()[0] > 0 and math.isfinite(opt.get_lr()[0])


@over_rules
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_frozen_nonfinite_parameter_is_left_out_of_the_rate(rule: str, value: float) -> None:
    # torch's own foreach-vs-for-loop test hands every optimizer a 0-dim parameter from torch.empty (any
    # bits, NaN included) that never gets a gradient; Adagrad makes state for it at once, so TLR tracks it.
    # Its NaN - NaN displacement made every window's sums NaN: the robust rule rolled each window back
    # and cut the rate x0.3 (1e-23 after 40 windows). It must train as beside a frozen finite parameter.
    def run(frozen_value: float) -> tuple[list[float], torch.Tensor]:
        model = _model()
        frozen = nn.Parameter(torch.full((3,), frozen_value))
        opt = TLR(torch.optim.Adagrad([*model.parameters(), frozen], lr=0.05), update_every=K, rule=rule)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _train(opt, model, _batches(12 * K))
        return [r.lr for r in opt.history], torch.cat([p.detach().flatten() for p in model.parameters()])

    rates, weights = run(value)
    expected_rates, expected_weights = run(0.0)
    assert rates == expected_rates
    assert torch.equal(weights, expected_weights)


@over_rules
def test_lr_zero_steps_are_not_counted(rule: str) -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), update_every=K, rule=rule)
    window = _longest_window(opt)
    warmup = 4
    sched = lr_scheduler.LambdaLR(opt, lambda t: 0.0 if t < warmup else 1.0)
    for t, batch in enumerate(_batches(warmup + 2 * window)):
        before = _flat(model)
        _train(opt, model, [batch])
        sched.step()
        if t < warmup:
            assert torch.equal(_flat(model), before)
            assert opt.group_meta[0].steps == 0 and opt.group_meta[0].window_steps == 0
    assert opt.group_meta[0].steps == 2 * window
    assert [r.step for r in opt.history] == [window, 2 * window]
    assert opt.history[1].status in ("updated", "capped", "nonpositive_denominator")


# -- copying ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@over_optim_db
def test_copy_and_pickle(how: str, info: TLRInfo) -> None:
    model = _model()
    opt = info(_two_groups(model, 1e-2, 1e-3), K)
    window = _longest_window(opt)
    batches = _batches(2 * window + 1 + 3 * K)
    _train(opt, model, batches[: 2 * window + 1])
    assert opt.history, "no meta-step before the copy: test is vacuous"
    clone = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    assert isinstance(clone, TLR) and [v.group for v in clone.param_groups] == clone.optimizer.param_groups
    assert all(v.group is g for v, g in zip(clone.param_groups, clone.optimizer.param_groups))
    assert clone.state is clone.optimizer.state
    assert clone.update_every == K and clone.history == opt.history and clone.rule == opt.rule
    assert [m.factor for m in clone.group_meta] == [m.factor for m in opt.group_meta]
    # The copy trains its own copies of the params, exactly as the original would.
    clone_params = [p for g in clone.param_groups for p in g["params"]]
    clone_model = _model()
    with torch.no_grad():
        for p, q in zip(clone_model.parameters(), clone_params):
            p.copy_(q)
    for p, q in zip(clone_model.parameters(), clone_params):
        p.data = q.data  # share storage so the model drives the clone's params
    for batch in batches[2 * window + 1 :]:
        clone_model.zero_grad()
        loss = _loss(clone_model, batch)
        loss.backward()
        for p, q in zip(clone_model.parameters(), clone_params):
            q.grad = p.grad
        _observe(clone, loss)
        clone.step()
    _train(opt, model, batches[2 * window + 1 :])
    assert clone.get_lr() == opt.get_lr()
    assert clone.history == opt.history
    assert torch.equal(torch.cat([q.reshape(-1) for q in clone_params]), _flat(model))
    calls = []
    clone.register_step_post_hook(lambda *args: calls.append(1))
    clone.step()
    assert calls == [1]


@pytest.mark.slow
def test_unpickled_in_a_fresh_process_still_fires_step_hooks(tmp_path: Path) -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.1), update_every=K)
    _train(opt, model, _batches(2))
    path = tmp_path / "opt.pkl"
    path.write_bytes(pickle.dumps(opt))
    script = textwrap.dedent(
        f"""
        import pickle, torch
        opt = pickle.loads(open({str(path)!r}, "rb").read())
        calls = []
        opt.register_step_pre_hook(lambda *a: calls.append("pre"))
        opt.register_step_post_hook(lambda *a: calls.append("post"))
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.ones_like(p)
        opt.step()
        assert calls == ["pre", "post"], calls
        assert opt.group_meta[0].steps == 3
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- factory and param groups ---------------------------------------------------------------------------
def test_wrap_factory() -> None:
    model = _model()
    opt = ntlr.wrap("SGD", model.parameters(), lr=0.1, momentum=0.9, update_every=5, gamma=0.5)
    assert isinstance(opt, TLR) and type(opt.optimizer) is torch.optim.SGD
    assert opt.update_every == 5 and opt.gamma == 0.5
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["lr"] == 0.1
    opt = ntlr.wrap(
        torch.optim.AdamW,
        model.parameters(),
        lr=1e-3,
        weight_decay=0.1,
        steps_per_epoch=100,
        p=0.1,
        max_factor=10.0,
    )
    assert type(opt.optimizer) is torch.optim.AdamW
    assert opt.update_every == 10 and opt.max_factor == 10.0 and opt.p == 0.1
    assert opt.param_groups[0]["weight_decay"] == 0.1
    _train(opt, model, _batches(2))
    with pytest.raises(ValueError, match="NoSuchOptimizer"):
        ntlr.wrap("NoSuchOptimizer", model.parameters(), lr=0.1, update_every=5)
    with pytest.raises(ValueError, match="optimizer_class"):
        ntlr.wrap("lr_scheduler", model.parameters(), lr=0.1, update_every=5)
    with pytest.raises(TypeError, match="optimizer_class"):
        ntlr.wrap(nn.Linear, model.parameters(), lr=0.1, update_every=5)
    with pytest.raises(TypeError):
        ntlr.wrap("SGD", model.parameters(), lr=0.1, update_every=5, no_such_option=1)


def test_wrap_hands_a_name_both_take_to_the_optimizer_and_a_tlr_prefixed_one_to_tlr() -> None:
    model = _model()
    opt = ntlr.wrap("AdamW", model.parameters(), lr=1e-3, foreach=False, update_every=5)
    assert opt.param_groups[0]["foreach"] is False and opt.foreach is None
    opt = ntlr.wrap("AdamW", model.parameters(), lr=1e-3, tlr_foreach=False, tlr_gamma=0.5, update_every=5)
    assert opt.param_groups[0]["foreach"] is None and opt.foreach is False and opt.gamma == 0.5
    with pytest.raises(TypeError, match="tlr_momentum: TLR takes no argument 'momentum'"):
        ntlr.wrap("SGD", model.parameters(), lr=0.1, tlr_momentum=0.9, update_every=5)


@over_rules
def test_per_layer_param_groups(rule: str) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    model[2].requires_grad_(False)
    groups = ntlr.per_layer_param_groups(model, lr=0.05, weight_decay=1e-4)
    assert [g["name"] for g in groups] == ["0", "4"]
    assert all(g["lr"] == 0.05 and g["weight_decay"] == 1e-4 for g in groups)
    assert groups[0]["params"] == [model[0].weight, model[0].bias]
    root = nn.Linear(3, 3)
    assert [g["name"] for g in ntlr.per_layer_param_groups(root)] == ["<root>"]

    opt = TLR(torch.optim.SGD(groups, momentum=0.9), update_every=K, rule=rule)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6 * _longest_window(opt)):
        x, y = torch.randn(16, 4, generator=gen), torch.randn(16, 2, generator=gen)
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        _observe(opt, loss)
        opt.step()
    f0, f1 = (m.factor for m in opt.group_meta)
    assert f0 != f1
    with pytest.raises(TypeError, match="model"):
        ntlr.per_layer_param_groups([nn.Parameter(torch.ones(1))])
    with pytest.raises(ValueError, match="no trainable"):
        ntlr.per_layer_param_groups(nn.Sequential(nn.Linear(2, 2).requires_grad_(False)))


@pytest.mark.parametrize("inner", [torch.optim.SGD, torch.optim.Adam])
@pytest.mark.parametrize("loss_guard", [False, True])
def test_maximize_is_minimising_the_negated_objective(inner: type, loss_guard: bool) -> None:
    """With ``maximize=True`` the closure returns the objective being climbed: the rule must read it as
    such (a rising objective is progress), so the run equals minimising its negation, rate for rate."""
    batches = _batches(8 * K)

    def run(maximize: bool) -> tuple:
        model = _model()
        inner_opt = inner(model.parameters(), lr=0.01, maximize=maximize)
        opt = TLR(inner_opt, update_every=K, loss_guard=loss_guard)
        sign = -1.0 if maximize else 1.0
        for batch in batches:

            def closure(batch: tuple[torch.Tensor, ...] = batch) -> torch.Tensor:
                opt.zero_grad()
                objective = sign * _loss(model, batch)
                objective.backward()
                return objective

            opt.step(closure)
        return _flat(model), opt.get_lr(), [(r.step, r.status, r.factor) for r in opt.history]

    (flat_min, lr_min, hist_min), (flat_max, lr_max, hist_max) = run(False), run(True)
    assert hist_max == hist_min and any(s != ntlr.Status.FIRST_WINDOW for _, s, _ in hist_min)
    assert lr_max == lr_min and torch.equal(flat_max, flat_min)


def test_a_rate_the_dtype_cannot_hold_is_not_reached() -> None:
    """On separable data the logistic loss flattens out towards 0: no curvature along the steps, and the
    paper's rule multiplies the rate by up to 100 a window for ever; torch would fail to convert it to the
    parameters' dtype in the inner step."""
    dtype = torch.float32
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 10, generator=g)
    y = (x[:, 0] > 0).long()
    w = nn.Parameter(torch.zeros(10, 2, dtype=dtype))
    opt = TLR(torch.optim.SGD([w], lr=1e-2, momentum=0.9), update_every=1, rule="paper")
    # Whichever comes first stops the climb: the rate reaching the dtype's largest value, or the window's
    # raw displacement (the rate times the steps) overflowing the dtype's squares in the inner products.
    with pytest.warns(RuntimeWarning, match="largest value the parameters' dtype holds|not finite"):
        for _ in range(100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(x.to(dtype) @ w, y).float().backward()
            opt.step()
    assert math.isfinite(opt.get_lr()[0]) and opt.get_lr()[0] <= torch.finfo(dtype).max
    kept = {ntlr.Status.CAPPED, ntlr.Status.NONFINITE}
    assert any(r.status in kept and r.factor == 1.0 for r in opt.history)


@pytest.mark.parametrize("foreach", [False, True])
def test_a_checkpoint_whose_buffers_hold_u_old_itself_loads_and_trains_on_alike(foreach: bool) -> None:
    """The u_old buffers keep the last window's raw displacement, scaled by its mean rate
    (``tlr_prev_scale``); checkpoints written before that hold u_old itself and no scale. Loaded, such a
    checkpoint reads as scale 1 and the next windows see the same inner products."""
    model = _model()
    opt = TLR(
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        update_every=K,
        foreach=foreach,
        rule="paper",
    )
    batches = _batches(8 * K)
    _train(opt, model, batches[: 3 * K])
    saved = opt.state_dict()
    scale = saved["param_groups"][0]["tlr_prev_scale"]
    assert scale == pytest.approx(opt.history[-1].lr, rel=0.5) and scale != 1.0  # the window's mean rate
    old = copy.deepcopy(saved)
    for group in old["param_groups"]:
        del group["tlr_prev_scale"]
    for entry in old["state"].values():
        entry["tlr_prev_update"] = entry["tlr_prev_update"] / scale  # u_old itself, as older files hold
    runs = []
    for state_dict in (saved, old):
        twin = _model()
        twin.load_state_dict(model.state_dict())
        inner = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
        resumed = TLR(inner, update_every=K, foreach=foreach, rule="paper")
        resumed.load_state_dict(copy.deepcopy(state_dict))
        _train(resumed, twin, batches[3 * K :])
        runs.append(resumed.history)
    assert len(runs[0]) == len(runs[1]) == 5
    for new, older in zip(*runs):
        assert new.status == older.status
        for x, y in ((new.a, older.a), (new.b, older.b), (new.c, older.c), (new.lr, older.lr)):
            assert x == pytest.approx(y, rel=1e-5)
