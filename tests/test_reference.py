"""TLR's fast paths against the paper-literal float64 reference in ``tests/reference.py``."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

import ntlr
from reference import run_reference

K = 4
N_STEPS = 7 * K  # the first window only records: 6 rescales per group
RTOL = 1e-10

INNER: dict[str, tuple[type[torch.optim.Optimizer], dict, tuple[float, float]]] = {
    "sgd": (torch.optim.SGD, {}, (0.05, 0.02)),
    "sgd_momentum": (torch.optim.SGD, {"momentum": 0.9}, (0.02, 0.01)),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, (0.02, 0.01)),
    "adam": (torch.optim.Adam, {}, (1e-2, 3e-3)),
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.1}, (1e-2, 3e-3)),
    "rmsprop": (torch.optim.RMSprop, {}, (3e-3, 1e-3)),
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def _batches(n: int = N_STEPS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(32, 5, generator=gen, dtype=torch.float64),
            torch.randn(32, 3, generator=gen, dtype=torch.float64),
        )
        for _ in range(n)
    ]


def _loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return (model(x) - y).pow(2).mean()


def _maker(name: str) -> Callable[[nn.Module], torch.optim.Optimizer]:
    cls, kwargs, (lr0, lr1) = INNER[name]

    def make(model: nn.Module) -> torch.optim.Optimizer:
        return cls(
            [{"params": model[0].parameters(), "lr": lr0}, {"params": model[2].parameters(), "lr": lr1}],
            **kwargs,
        )

    return make


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _run_tlr(name: str, foreach: bool, batches, **tlr_kwargs):
    model = _model()
    opt = ntlr.TLR(_maker(name)(model), update_every=K, foreach=foreach, rule="paper", **tlr_kwargs)
    lrs, weights = [], []
    for batch in batches:
        opt.zero_grad()
        _loss(model, batch).backward()
        lrs.append(opt.get_lr())
        opt.step()
        weights.append(_flat(model))
    return opt, lrs, weights


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("name", list(INNER))
def test_matches_reference(name: str, foreach: bool) -> None:
    batches = _batches()
    ref = run_reference(_model(), _maker(name), batches, _loss, update_every=K)
    opt, lrs, weights = _run_tlr(name, foreach, batches)

    # Not vacuous: the rates moved, and differently per group.
    statuses = [r[5] for r in ref.records]
    assert statuses.count("first_window") == 2
    assert statuses.count("updated") + statuses.count("capped") >= 4
    assert ref.factors[0] != 1.0 and ref.factors[1] != 1.0

    torch.testing.assert_close(
        torch.tensor(lrs, dtype=torch.float64),
        torch.tensor(ref.lrs, dtype=torch.float64),
        rtol=RTOL,
        atol=0.0,
    )
    for step, (got, want) in enumerate(zip(weights, ref.weights)):
        torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-14, msg=f"weights differ at step {step}")
    for g, factor in enumerate(ref.factors):
        assert opt.group_meta[g].factor == pytest.approx(factor, rel=RTOL)

    assert len(opt.history) == len(ref.records)
    for rec, (step, group, a, b, factor, status) in zip(opt.history, ref.records):
        assert (rec.step, rec.group, rec.status) == (step, group, status)
        assert rec.a == pytest.approx(a, rel=1e-9, abs=1e-300)
        assert rec.b == pytest.approx(b, rel=1e-9, abs=1e-300)
        assert rec.factor == pytest.approx(factor, rel=RTOL)


@pytest.mark.parametrize("name", ["sgd_momentum", "adamw"])
def test_matches_reference_with_cap_and_gamma_one(name: str) -> None:
    """A small cap and γ = 1 exercise the 'capped' branch on both sides."""
    batches = _batches()
    ref = run_reference(_model(), _maker(name), batches, _loss, update_every=K, gamma=1.0, max_factor=1.5)
    assert "capped" in [r[5] for r in ref.records]
    opt, lrs, weights = _run_tlr(name, False, batches, gamma=1.0, max_factor=1.5)
    assert [r.status for r in opt.history] == [r[5] for r in ref.records]
    torch.testing.assert_close(
        torch.tensor(lrs, dtype=torch.float64),
        torch.tensor(ref.lrs, dtype=torch.float64),
        rtol=RTOL,
        atol=0.0,
    )
    torch.testing.assert_close(weights[-1], ref.weights[-1], rtol=RTOL, atol=1e-14)


def test_matches_reference_with_changing_base_lr() -> None:
    """The base rate changes between steps (a scheduler's job): the window mean uses the rates applied."""
    batches = _batches()

    def schedule(t: int) -> list[float]:
        return [0.02 * (1.0 + 0.1 * (t % 5)), 0.01 * (1.0 + 0.3 * (t % 3))]

    ref = run_reference(_model(), _maker("sgd_momentum"), batches, _loss, update_every=K, base_lrs=schedule)

    model = _model()
    opt = ntlr.TLR(_maker("sgd_momentum")(model), update_every=K, rule="paper")
    lrs = []
    for t, batch in enumerate(batches):
        for group, lr in zip(opt.param_groups, schedule(t)):
            group["lr"] = lr
        opt.zero_grad()
        _loss(model, batch).backward()
        lrs.append(opt.get_lr())
        opt.step()
    assert ref.factors[0] != 1.0
    torch.testing.assert_close(
        torch.tensor(lrs, dtype=torch.float64),
        torch.tensor(ref.lrs, dtype=torch.float64),
        rtol=RTOL,
        atol=0.0,
    )
    torch.testing.assert_close(_flat(model), ref.weights[-1], rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("name", list(INNER))
def test_foreach_equals_loop(name: str) -> None:
    """The per-tensor loop is the ground truth of the foreach path (float32, where rounding could differ)."""
    batches = [(x.float(), y.float()) for x, y in _batches()]

    def run(foreach: bool):
        model = _model().float()
        opt = ntlr.TLR(_maker(name)(model), update_every=K, foreach=foreach, rule="paper")
        lrs = []
        for batch in batches:
            opt.zero_grad()
            _loss(model, batch).backward()
            opt.step()
            lrs.append(opt.get_lr())
        return lrs, _flat(model), copy.deepcopy(opt.history)

    lrs_loop, w_loop, hist_loop = run(False)
    lrs_foreach, w_foreach, hist_foreach = run(True)
    assert lrs_foreach == lrs_loop
    assert torch.equal(w_foreach, w_loop)
    assert [r.status for r in hist_foreach] == [r.status for r in hist_loop]
