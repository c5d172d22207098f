"""The stateless update math: ``newton_factor``, ``close_window_`` and ``restart_window_``."""

from __future__ import annotations

import math
import random

import pytest
import torch

from ntlr import MetaStepDecision, close_window_, newton_factor, restart_window_


# -- newton_factor -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b", "kwargs", "factor", "status"),
    [
        (5.0, 1.0, {"first_window": True}, 1.0, "first_window"),
        (math.nan, 1.0, {}, 1.0, "nonfinite"),
        (1.0, math.inf, {}, 1.0, "nonfinite"),
        (-math.inf, 1.0, {}, 1.0, "nonfinite"),
        (1.0, 1.0, {}, 1.0, "nonpositive_denominator"),  # b - a == 0
        (2.0, 1.0, {}, 1.0, "nonpositive_denominator"),  # b - a < 0
        (0.0, 0.0, {}, 1.0, "nonpositive_denominator"),  # nothing moved
        (0.5, 1.0, {}, 1.0 + 0.33 * 0.5 / 0.5, "updated"),
        (-1.0, 1.0, {}, 1.0 - 0.33 * 1.0 / 2.0, "updated"),  # opposite directions: decrease
        (0.0, 1.0, {}, 1.0, "updated"),  # orthogonal: the line-search optimum, keep
        (0.999, 1.0, {}, 100.0, "capped"),  # 1 + 0.33 * 999 > 100
        (0.9, 1.0, {"gamma": 1.0, "max_factor": 5.0}, 5.0, "capped"),
        (0.75, 1.0, {"gamma": 1.0, "max_factor": 4.0}, 4.0, "updated"),  # exactly at the cap: 1 + 3
        (-3.0, 1.0, {"gamma": 1.0}, 0.25, "updated"),  # γ = 1: factor = b / (b - a)
    ],
)
def test_newton_factor_cases(a: float, b: float, kwargs: dict, factor: float, status: str) -> None:
    options = {"gamma": 0.33, "max_factor": 100.0, **kwargs}
    decision = newton_factor(a, b, **options)
    assert isinstance(decision, MetaStepDecision)
    assert decision.status == status
    assert decision.factor == pytest.approx(factor, rel=1e-15)
    assert decision.skipped == (status not in ("updated", "capped"))


def test_newton_factor_first_window_wins_over_nonfinite() -> None:
    assert newton_factor(math.nan, math.nan, gamma=0.33, max_factor=100.0, first_window=True).status == (
        "first_window"
    )


def _samples(rng: random.Random):
    """(a, b) pairs: from real vector pairs (Cauchy-Schwarz consistent) and raw extremes."""
    for _ in range(2000):
        n = rng.randint(1, 6)
        scale_old = 10.0 ** rng.uniform(-30, 30)
        scale_new = 10.0 ** rng.uniform(-30, 30)
        old = [rng.gauss(0, 1) * scale_old for _ in range(n)]
        new = [rng.gauss(0, 1) * scale_new for _ in range(n)]
        if rng.random() < 0.2:
            new = [x * rng.uniform(-1.5, 1.5) for x in old]  # (anti)parallel windows
        yield sum(x * y for x, y in zip(old, new)), sum(x * x for x in old)
    extremes = [0.0, -0.0, 1e-308, 5e-324, 1.0, -1.0, 1e308, -1e308, math.inf, -math.inf, math.nan]
    for a in extremes:
        for b in extremes:
            yield a, b
    for _ in range(2000):
        yield rng.uniform(-1e3, 1e3), rng.uniform(-1e3, 1e3)


@pytest.mark.parametrize("gamma", [1e-6, 0.1, 0.33, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("max_factor", [1.0, 2.0, 100.0, 1e300])
def test_newton_factor_is_always_a_positive_finite_bounded_factor(gamma: float, max_factor: float) -> None:
    rng = random.Random(hash((gamma, max_factor)) & 0xFFFF)
    for a, b in _samples(rng):
        decision = newton_factor(a, b, gamma=gamma, max_factor=max_factor)
        f = decision.factor
        assert math.isfinite(f) and 0.0 < f <= max_factor, (a, b, decision)
        if decision.skipped:
            assert f == 1.0, (a, b, decision)
        if decision.status == "updated" and b >= 0.0:
            # With b - a > 0 and γ ≤ 1 the factor is above 1 - γ (before the cap).
            assert f > (1.0 - gamma) * (1 - 1e-12), (a, b, decision)
        if decision.status == "updated" and not math.isclose(f, 1.0):
            assert (f > 1.0) == (a > 0.0), (a, b, decision)


# -- close_window_ / restart_window_ ---------------------------------------------------------------------
def _tensors(dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(7, 3), (5,), (), (2, 3, 4), (1,)]
    params = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    snaps = [p + 0.01 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in params]
    prev = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in params]
    return params, snaps, prev


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_close_window_matches_the_definition(dtype: torch.dtype) -> None:
    params, snaps, prev = _tensors(dtype)
    lr = 0.03
    expected_new = [((s.double() - p.double()) / lr) for s, p in zip(snaps, params)]
    old = torch.cat([t.double().reshape(-1) for t in prev])
    new = torch.cat([t.reshape(-1) for t in expected_new])
    sums = close_window_(params, snaps, prev, lr)
    assert sums.dtype == torch.float64 and sums.shape == (2,)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}[dtype]
    for got, want in zip(snaps, expected_new):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol * want.abs().max().item())
    # The inner products use the in-place u_new (as rounded to the param dtype).
    u_new = torch.cat([t.double().reshape(-1) for t in snaps])
    assert sums[0].item() == pytest.approx(float(old @ u_new), rel=max(tol, 1e-12), abs=1e-9)
    assert sums[1].item() == pytest.approx(float(old @ old), rel=max(tol, 1e-12))
    assert float(old @ new) == pytest.approx(sums[0].item(), rel=50 * tol, abs=50 * tol * old.norm().item())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_close_window_foreach_equals_loop(dtype: torch.dtype) -> None:
    params, snaps_loop, prev = _tensors(dtype)
    snaps_foreach = [s.clone() for s in snaps_loop]
    sums_loop = close_window_(params, snaps_loop, prev, 0.1, foreach=False)
    sums_foreach = close_window_(params, snaps_foreach, prev, 0.1, foreach=True)
    for x, y in zip(snaps_loop, snaps_foreach):
        assert torch.equal(x, y)
    assert torch.equal(sums_loop, sums_foreach)


def test_close_window_large_bf16_sums_accumulate_in_float() -> None:
    """A million bf16 entries: the dots upcast, so b is exact to float32 accuracy, not bf16's."""
    n = 1 << 20
    params = [torch.zeros(n, dtype=torch.bfloat16)]
    snaps = [torch.full((n,), 0.5, dtype=torch.bfloat16)]
    prev = [torch.ones(n, dtype=torch.bfloat16)]
    a, b = close_window_(params, snaps, prev, 0.5).tolist()
    assert a == n and b == n


def test_close_window_empty() -> None:
    sums = close_window_([], [], [], 0.1)
    assert sums.tolist() == [0.0, 0.0]
    restart_window_([], [])  # no error


@pytest.mark.parametrize("foreach", [False, True])
def test_restart_window_copies_the_weights(foreach: bool) -> None:
    params, snaps, _ = _tensors(torch.float32)
    restart_window_(params, snaps, foreach=foreach)
    for p, s in zip(params, snaps):
        assert torch.equal(p, s) and p.data_ptr() != s.data_ptr()


def test_close_window_nonfinite_propagates_to_the_sums() -> None:
    params, snaps, prev = _tensors(torch.float32)
    params[0][0, 0] = math.nan
    a, b = close_window_(params, snaps, prev, 0.1).tolist()
    assert math.isnan(a) and math.isfinite(b)
    decision = newton_factor(a, b, gamma=0.33, max_factor=100.0)
    assert decision.status == "nonfinite" and decision.factor == 1.0
