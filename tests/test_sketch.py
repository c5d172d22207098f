"""TLR(sketch=s): window buffers over every s-th coordinate, 8/s bytes per float32 parameter."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ntlr import TLR

K = 4


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 3))


def _train(
    opt: TLR, model: nn.Module, steps: int, masks: dict[nn.Parameter, torch.Tensor] | None = None
) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        if masks:  # only the sketched coordinates move
            for p, mask in masks.items():
                assert p.grad is not None
                p.grad.mul_(mask)
        if opt.observes_loss:
            opt.observe_loss(loss)
        opt.step()


def _sketch_masks(model: nn.Module, stride: int) -> dict[nn.Parameter, torch.Tensor]:
    masks = {}
    for p in model.parameters():
        mask = torch.zeros(p.numel())
        mask[::stride] = 1.0
        masks[p] = mask.view_as(p)
    return masks


@pytest.mark.parametrize("stride", [2, 3, 8])
def test_the_buffers_hold_every_stride_th_coordinate(stride: int) -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5), update_every=K, sketch=stride)
    _train(opt, model, 3)
    for p in model.parameters():
        state = opt.state[p]
        assert state["tlr_snapshot"].shape == (math.ceil(p.numel() / stride),)
        assert state["tlr_prev_update"].shape == state["tlr_snapshot"].shape
    extra = sum(
        opt.state[p][k].nbytes for p in model.parameters() for k in ("tlr_snapshot", "tlr_prev_update")
    )
    params = sum(p.numel() for p in model.parameters())
    assert extra / params <= 8 / stride + 8 * len(list(model.parameters())) / params  # ceil per tensor


@pytest.mark.parametrize("rule", ["paper", "robust"])
def test_where_only_the_sketched_coordinates_move_the_sketch_is_exact(rule: str) -> None:
    """The other coordinates add 0 to a, b and c: the trajectory is the exact mode's (up to the float32
    dot products' summation order)."""
    runs = []
    for sketch in (None, 3):
        model = _model()
        inner = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
        opt = TLR(inner, update_every=K, rule=rule, sketch=sketch)
        _train(opt, model, 12 * K, masks=_sketch_masks(model, 3))
        runs.append(([(r.a, r.b, r.c, r.factor) for r in opt.history], [str(r.status) for r in opt.history]))
    (exact, exact_status), (sketched, sketched_status) = runs
    assert sketched_status == exact_status
    torch.testing.assert_close(torch.tensor(sketched), torch.tensor(exact), rtol=1e-5, atol=1e-9)
    assert len(exact) >= 10 and any(f != 1.0 for *_, f in exact)  # not vacuous


def test_a_rollback_cuts_the_rate_clears_momentum_and_restarts_the_window_where_the_weights_are() -> None:
    model = _model()
    inner = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt = TLR(inner, update_every=K, rule="robust", sketch=2)
    window = opt.window_lengths()[0]
    _train(opt, model, 3 * window)
    factor = opt.group_meta[0].factor
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    for _ in range(window):  # a window whose loss jumped: the robust rule rolls it back
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.observe_loss(loss * 1e6)
        opt.step()
    assert opt.history[-1].status == "rollback"
    assert opt.group_meta[0].factor < factor
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    for p in model.parameters():
        assert torch.equal(opt.state[p]["tlr_snapshot"], p.detach().reshape(-1)[::2])  # restarted here
        assert not opt.state[p]["momentum_buffer"].any()
    assert torch.isfinite(weights).all()


def test_state_dict_round_trip_and_a_checkpoint_of_the_other_mode_is_refused() -> None:
    model = _model()
    opt = TLR(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5), update_every=K, sketch=4)
    _train(opt, model, 2 * K + 1)
    saved = opt.state_dict()
    again = TLR(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5), update_every=K, sketch=4)
    again.load_state_dict(saved)
    assert again.get_lr() == opt.get_lr()
    exact = TLR(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5), update_every=K)
    with pytest.raises(ValueError, match="sketch"):
        exact.load_state_dict(saved)


@pytest.mark.parametrize(
    ("value", "error"), [(1, ValueError), (0, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_sketch_is_refused_by_name(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="sketch"):
        TLR(torch.optim.SGD(_model().parameters(), lr=0.1), update_every=K, sketch=value)  # type: ignore[arg-type]
