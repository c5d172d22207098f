"""What a new user meets first (issue 14): misuse of the loss feed is loud, the window in use is shown,
printing the optimizer shows what it trains, a state dict hands over to a plain optimizer cleanly, and a
misspelt optimizer name gets a suggestion."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import ntlr
from ntlr import TLR, RobustRule


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _loss(model: nn.Module, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 4, generator=gen), torch.randn(16, 2, generator=gen)
    return (model(x) - y).pow(2).mean()


def _tlr_warnings(train: Callable[[], object]) -> list[str]:
    """The messages of the RuntimeWarnings TLR raised while ``train`` ran (each once per optimizer)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return [message for message in messages if "TLR" in message]


def _loop(opt: TLR, model: nn.Module, steps: int, feed: str = "before") -> None:
    """``feed``: 'before' / 'after' step(), 'none', or 'closure' (step(closure))."""
    for t in range(steps):
        opt.zero_grad()
        loss = _loss(model, t)
        loss.backward()
        if feed == "before":
            opt.observe_loss(loss)
        if feed == "closure":
            opt.step(lambda loss=loss: loss.detach())
        else:
            opt.step()
        if feed == "after":
            opt.observe_loss(loss)


# -- item 2: the loss the default rule reads -----------------------------------------------------------
def test_forgetting_observe_loss_under_the_default_rule_warns_once_saying_how_to_silence_it() -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3)
    messages = _tlr_warnings(lambda: _loop(opt, model, 12, feed="none"))
    assert len(messages) == 1 and "reads the training loss" in messages[0]
    assert "observe_loss" in messages[0] and "uses_loss=False" in messages[0]  # how to feed it, or not
    assert len(opt.history) == 4  # four windows closed without a loss: still one warning


@pytest.mark.parametrize(
    ("rule", "feed"),
    [("robust", "before"), ("robust", "closure"), (RobustRule(uses_loss=False), "none"), ("paper", "none")],
)
def test_the_right_use_is_silent(rule: str | RobustRule, feed: str) -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3, rule=rule)
    assert _tlr_warnings(lambda: _loop(opt, model, 12, feed=feed)) == []
    assert len(opt.history) == 4


@pytest.mark.parametrize("again", [lambda loss: loss, lambda loss: loss.detach(), lambda loss: loss.item()])
def test_observing_the_same_loss_twice_before_one_step_warns_once(again: Callable[..., object]) -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3)

    def train() -> None:
        for t in range(6):
            opt.zero_grad()
            loss = _loss(model, t)
            loss.backward()
            opt.observe_loss(loss if not isinstance(again(loss), float) else loss.item())
            opt.observe_loss(again(loss))
            opt.step()

    messages = _tlr_warnings(train)
    assert len(messages) == 1 and "the same loss twice before one step()" in messages[0]


def test_micro_batch_losses_before_one_step_are_silent_and_all_count() -> None:
    """Gradient accumulation: two different losses before each step() are that step's losses."""
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3)

    def train() -> None:
        for t in range(2):
            opt.zero_grad()
            for micro in range(2):
                loss = _loss(model, 2 * t + micro) / 2
                loss.backward()
                opt.observe_loss(loss)
            opt.step()

    assert _tlr_warnings(train) == []
    assert opt.state_dict()["param_groups"][0]["tlr_loss_count"] == 4


def test_observing_after_step_warns_once() -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3)
    messages = _tlr_warnings(lambda: _loop(opt, model, 6, feed="after"))
    assert len(messages) == 1 and "after step()" in messages[0]


def test_a_closure_loss_on_an_observed_step_warns_and_is_not_counted_twice() -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3)

    def one_step() -> None:
        opt.zero_grad()
        loss = _loss(model, 0)
        loss.backward()
        opt.observe_loss(loss)
        opt.step(lambda: loss.detach())

    messages = _tlr_warnings(one_step)
    assert len(messages) == 1 and "not counted again" in messages[0]
    assert [group["tlr_loss_count"] for group in opt.state_dict()["param_groups"]] == [1]


# -- item 3: the window the rule uses ---------------------------------------------------------------------
def test_a_lengthened_window_is_said_once_and_shown_in_repr_and_history() -> None:
    model = _model()
    with pytest.warns(RuntimeWarning, match="windows of 10 steps, not the 2 asked for"):
        opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), update_every=2)
    assert opt.window_lengths() == [10]
    assert "update_every=2, window=10," in repr(opt)
    _loop(opt, model, 30)
    assert [record.window_steps for record in opt.history] == [10, 10, 10]
    assert [record.step for record in opt.history] == [10, 20, 30]


def test_the_window_asked_for_is_silent() -> None:
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = TLR(
            torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
            update_every=2,
            rule=RobustRule(momentum_windows=0),
        )
    assert opt.window_lengths() == [2] and "window=2," in repr(opt)


# -- item 5: printing the optimizer, and its state in a plain optimizer -----------------------------------
def test_printing_shows_the_inner_optimizer_rule_window_and_trained_rates_not_tlr_keys() -> None:
    model = _model()
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}]
    opt = TLR(torch.optim.SGD(groups, lr=0.05), update_every=3)
    _loop(opt, model, 9)
    text = repr(opt)
    assert "tlr_" not in text
    assert "optimizer=SGD (" in text and "rule=RobustRule(" in text and "window=3" in text
    assert any(factor != 1.0 for factor in (m.factor for m in opt.group_meta))  # not vacuous
    for rate in opt.get_lr():
        assert f"trained lr: {rate:.6g}" in text
    assert text.count("Parameter Group") == 2


def test_printing_shows_the_rate_in_use_during_the_budgets_decay() -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3, total_steps=10)
    _loop(opt, model, 9)  # into the decay over the last fifth: one step left
    rate = opt.get_lr()[0]
    assert 0.0 < rate < 0.05 * opt.group_meta[0].factor  # not vacuous: the decay acts
    assert f"trained lr: {rate:.6g} (lr × trained factor" in repr(opt) and "× decay 0.5)" in repr(opt)


def test_a_zero_rate_everywhere_warns_that_nothing_will_train() -> None:
    model = _model()
    with pytest.warns(RuntimeWarning, match="every param group has lr=0"):
        TLR(torch.optim.SGD(model.parameters(), lr=0.0), update_every=3)
    frozen = [{"params": model[0].parameters(), "lr": 0.0}, {"params": model[2].parameters()}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one frozen group among trained ones is a choice, not a mistake
        TLR(torch.optim.SGD(frozen, lr=0.05), update_every=3)


def test_warnings_point_at_the_users_line_not_into_ntlr_or_torch() -> None:
    model = _model()
    with pytest.warns(RuntimeWarning) as caught:
        opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), update_every=4)  # window
        _loop(opt, model, 12, feed="none")  # a window closes without a loss: warned inside step()
        ntlr.wrap("SGD", model.parameters(), lr=0.0, update_every=5)  # through the factory
    messages = {str(w.message).split(":")[1].strip()[:20]: w.filename for w in caught}
    assert len(messages) == 3 and set(messages.values()) == {__file__}, messages


def _trained() -> tuple[nn.Module, TLR]:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5), update_every=3)
    _loop(opt, model, 12)
    assert opt.get_lr()[0] != 0.05  # the rate was trained: the hand-over below is not vacuous
    return model, opt


def test_plain_state_dict_hands_the_trained_rate_to_a_bare_optimizer_without_tlr_entries() -> None:
    model, opt = _trained()
    state_dict = opt.state_dict()
    bare = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    bare.load_state_dict(ntlr.plain_state_dict(state_dict))
    assert bare.param_groups[0]["lr"] == pytest.approx(opt.get_lr()[0])
    assert not any(key.startswith("tlr_") for group in bare.param_groups for key in group)
    assert all(set(bare.state[p]) == {"momentum_buffer"} for p in model.parameters())
    # The same structure a bare optimizer saves itself; the argument is left as it was.
    assert set(bare.state_dict()["param_groups"][0]) == set(
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5).state_dict()["param_groups"][0]
    )
    assert "tlr_factor" in state_dict["param_groups"][0]
    # The optimizer itself will do.
    assert ntlr.plain_state_dict(opt)["param_groups"] == ntlr.plain_state_dict(state_dict)["param_groups"]


def test_loading_a_tlr_state_dict_straight_into_a_bare_optimizer_is_torchs_own_load() -> None:
    """What docs/integrations.md says happens without plain_state_dict: the tlr_* entries ride along
    unused and the lr is the scheduled one, not the trained one."""
    model, opt = _trained()
    bare = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    bare.load_state_dict(opt.state_dict())
    assert bare.param_groups[0]["lr"] == 0.05 and "tlr_factor" in bare.param_groups[0]


@pytest.mark.parametrize("bad", [{}, {"state": {}}, [1, 2]])
def test_plain_state_dict_names_what_it_needs(bad: object) -> None:
    with pytest.raises(ValueError, match="state_dict must be an optimizer state dict"):
        ntlr.plain_state_dict(bad)  # type: ignore[arg-type]


# -- item 6: a misspelt optimizer name --------------------------------------------------------------------
@pytest.mark.parametrize(("name", "suggestion"), [("Adamw", "AdamW"), ("sgd", "SGD"), ("RMSProp", "RMSprop")])
def test_wrap_suggests_the_closest_torch_optimizer(name: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match=f"did you mean '{suggestion}'"):
        ntlr.wrap(name, _model().parameters(), lr=0.1, update_every=2)


def test_wrap_suggests_nothing_for_a_name_far_from_every_optimizer() -> None:
    with pytest.raises(ValueError, match=r"not an optimizer in torch\.optim$"):
        ntlr.wrap("Zebra", _model().parameters(), lr=0.1, update_every=2)


def test_wrap_names_a_misspelt_tlr_argument_that_the_optimizer_rejects() -> None:
    message = "updat_every: neither SGD nor TLR takes this argument; did you mean 'update_every'"
    with pytest.raises(TypeError, match=message):
        ntlr.wrap("SGD", _model().parameters(), lr=0.1, updat_every=2)


def test_a_tlr_argument_given_with_a_rule_object_is_named_with_the_fix() -> None:
    message = r"set it on the object instead, e\.g\. rule=RobustRule\(gamma=\.\.\.\)"
    with pytest.raises(ValueError, match=message):
        TLR(torch.optim.SGD(_model().parameters(), lr=0.1), update_every=2, rule=ntlr.RobustRule(), gamma=0.5)


def test_a_budget_shorter_than_two_windows_warns_that_the_rate_never_trains() -> None:
    with pytest.warns(RuntimeWarning, match="total_steps=20 is shorter than two windows"):
        TLR(torch.optim.SGD(_model().parameters(), lr=0.1), update_every=50, total_steps=20)
    opt = TLR(torch.optim.SGD(_model().parameters(), lr=0.1), update_every=5)
    with pytest.warns(RuntimeWarning, match="total_steps=9 is shorter than two windows"):
        opt.set_total_steps(9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TLR(torch.optim.SGD(_model().parameters(), lr=0.1), update_every=5, total_steps=10)


def test_the_rule_prints_only_what_differs_from_its_defaults() -> None:
    assert repr(RobustRule()) == "RobustRule()"
    changed = RobustRule(band_z=2.0, momentum_windows=0)
    assert repr(changed) == "RobustRule(momentum_windows=0, band_z=2.0)"
    assert eval(repr(changed), {"RobustRule": RobustRule}) == changed
    opt = TLR(torch.optim.SGD(_model().parameters(), lr=0.05), update_every=3)
    assert "rule=RobustRule()," in repr(opt)


def test_a_window_lengthened_from_steps_per_epoch_is_silent() -> None:
    """K = p * steps_per_epoch is a fraction of an epoch, not a length asked for: lengthening it to the
    momentum's horizon is the rule's call, shown by window_lengths() and repr, not warned about."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = TLR(torch.optim.SGD(_model().parameters(), lr=0.05, momentum=0.9), steps_per_epoch=29)
    assert opt.update_every == 6 and opt.window_lengths() == [10] and "window=10," in repr(opt)
    with pytest.warns(RuntimeWarning, match="uses windows of 10 steps, not the 6 asked for"):
        TLR(torch.optim.SGD(_model().parameters(), lr=0.05, momentum=0.9), update_every=6)


def test_step_before_backward_is_named() -> None:
    """``opt.step()`` before ``loss.backward()`` (after ``zero_grad``): no parameter moves and none has a
    gradient when a window closes; TLR says so once. The right order says nothing of it."""
    for wrong in (True, False):
        model = _model()
        opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3)

        def train(model: nn.Module = model, opt: TLR = opt, wrong: bool = wrong) -> None:
            for seed in range(12):
                opt.zero_grad()
                loss = _loss(model, seed)
                if not wrong:
                    loss.backward()
                opt.observe_loss(loss)
                opt.step()
                if wrong:
                    loss.backward()

        said = [m for m in _tlr_warnings(train) if "before loss.backward()" in m]
        assert len(said) == (1 if wrong else 0)


def test_a_checkpoint_of_another_rule_says_what_was_not_loaded() -> None:
    """A robust rule's checkpoint loaded into ``rule="paper"``: the trained factor loads, the robust rule's
    memory cannot; TLR says so once (a new user's audit: it was silent). The same rule is silent."""
    model = _model()
    robust = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3)
    _loop(robust, model, 12)
    state = robust.state_dict()
    for rule, expected in (("paper", 1), ("robust", 0)):
        other = TLR(torch.optim.SGD(model.parameters(), lr=0.05), update_every=3, rule=rule)
        said = [m for m in _tlr_warnings(lambda other=other: other.load_state_dict(state)) if "memory" in m]
        assert len(said) == expected, rule
        assert other.group_meta[0].factor == robust.group_meta[0].factor
