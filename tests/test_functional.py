"""The stateless update math: ``newton_factor`` and the window functions."""

from __future__ import annotations

import math
import random

import pytest
import torch

from ntlr import (
    MetaStepDecision,
    advance_window_,
    newton_factor,
    restart_window_,
    rollback_window_,
    undo_kept_window_,
    window_inner_products,
)
from ntlr.functional import (
    reset_inner_momentum_,
    restart_inner_statistics_,
    window_partials_and_directions,
    window_products_and_directions,
    window_scales,
)


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


# -- the window buffers ------------------------------------------------------------------------------------
def _tensors(dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(7, 3), (5,), (), (2, 3, 4), (1,)]
    params = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    snaps = [p + 0.01 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in params]
    prev = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in params]
    return params, snaps, prev


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_window_inner_products_match_the_definition(dtype: torch.dtype) -> None:
    params, snaps, prev = _tensors(dtype)
    before = [t.clone() for t in (*params, *snaps, *prev)]
    lr = 0.03
    # u_new as the functions round it: the displacement formed in the param dtype, then scaled exactly.
    u_new = torch.cat([(s - p).double().reshape(-1) / lr for s, p in zip(snaps, params)])
    old = torch.cat([t.double().reshape(-1) for t in prev])
    sums = window_inner_products(params, snaps, prev, lr)
    assert sums.dtype == torch.float64 and sums.shape == (3,)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}[dtype]
    # a sums terms of both signs: its rounding is relative to the terms' size, not to the sum's.
    scale = float(old.abs() @ u_new.abs())
    assert sums[0].item() == pytest.approx(
        float(old @ u_new), rel=max(tol, 1e-12), abs=max(tol * scale, 1e-9)
    )
    assert sums[1].item() == pytest.approx(float(old @ old), rel=max(tol, 1e-12))
    assert sums[2].item() == pytest.approx(float(u_new @ u_new), rel=max(tol, 1e-12))
    # Nothing was written: a rollback can still restore the snapshot.
    for x, y in zip(before, (*params, *snaps, *prev)):
        assert torch.equal(x, y)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_weights_sum_is_the_snapshots_squared_norm(dtype: torch.dtype, foreach: bool) -> None:
    params, snaps, prev = _tensors(dtype)
    plain, _ = window_products_and_directions(params, snaps, prev, 0.03, foreach=foreach)
    with_weights, _ = window_products_and_directions(params, snaps, prev, 0.03, foreach=foreach, weights=True)
    assert with_weights.shape == (4,) and torch.equal(with_weights[:3], plain)
    start = sum(float(s.double().pow(2).sum()) for s in snaps)
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    assert with_weights[3].item() == pytest.approx(start, rel=tol)
    empty, _ = window_products_and_directions([], [], [], 0.03, weights=True)
    assert empty.tolist() == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_advance_window_turns_the_buffers_over(dtype: torch.dtype) -> None:
    params, snaps, prev = _tensors(dtype)
    lr = 0.03
    want_prev = [(s - p) / lr for s, p in zip(snaps, params)]
    advance_window_(params, snaps, prev, lr)
    for got, want, s, p in zip(prev, want_prev, snaps, params):
        assert torch.equal(got, want) and torch.equal(s, p) and s.data_ptr() != p.data_ptr()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_foreach_equals_loop(dtype: torch.dtype) -> None:
    params, snaps_loop, prev_loop = _tensors(dtype)
    snaps_foreach = [s.clone() for s in snaps_loop]
    prev_foreach = [s.clone() for s in prev_loop]
    sums_loop = window_inner_products(params, snaps_loop, prev_loop, 0.1, foreach=False)
    sums_foreach = window_inner_products(params, snaps_foreach, prev_foreach, 0.1, foreach=True)
    assert torch.equal(sums_loop, sums_foreach)
    advance_window_(params, snaps_loop, prev_loop, 0.1, foreach=False)
    advance_window_(params, snaps_foreach, prev_foreach, 0.1, foreach=True)
    for x, y in zip((*snaps_loop, *prev_loop), (*snaps_foreach, *prev_foreach)):
        assert torch.equal(x, y)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("old_norm", [True, False])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_partials_are_the_products_per_tensor(
    dtype: torch.dtype, weights: bool, old_norm: bool, foreach: bool
) -> None:
    """The per-tensor partial sums TLR adds on the host: the same dots, rows a, (b), c, (<s, s>)."""
    params, snaps, prev = _tensors(dtype)
    kwargs = {"foreach": foreach, "old_norm": old_norm, "weights": weights}
    products, directions = window_products_and_directions(params, snaps, prev, 0.03, **kwargs)
    partials, partial_directions = window_partials_and_directions(params, snaps, prev, **kwargs)
    n = len(params)
    rows = [torch.stack(partials[i : i + n]).double().sum() for i in range(0, len(partials), n)]
    if not old_norm:
        rows.insert(1, torch.zeros((), dtype=torch.float64))
    # The partials are the raw dots; the products are their sums scaled (u_old stored as it is).
    scales = [*window_scales(0.03), 1.0][: len(rows)]
    assert torch.equal(torch.stack(rows) * torch.tensor(scales, dtype=torch.float64), products)
    assert (directions is None) == (partial_directions is None) == (not foreach)
    for x, y in zip(directions or [], partial_directions or []):
        assert torch.equal(x, y)
    assert window_partials_and_directions([], [], [], **kwargs) == ([], None)


@pytest.mark.parametrize("foreach", [False, True])
def test_undo_kept_window_goes_back_to_the_kept_windows_start(foreach: bool) -> None:
    """Kept windows store ``start - end`` in u_old (``keep_scale``): after a rollback to the snapshot (the
    kept window's end), adding it lands on the kept window's start; the snapshot follows, u_old clears."""
    torch.manual_seed(0)
    start = [torch.randn(3, 4), torch.randn(5)]
    params = [t.clone() for t in start]
    snaps = [t.clone() for t in start]
    prev = [torch.zeros_like(t) for t in start]
    for p in params:  # the kept window
        p.sub_(0.1 * torch.randn_like(p))
    advance_window_(params, snaps, prev, 0.1, keep_scale=True)
    for p in params:  # the window rolled back
        p.add_(torch.randn_like(p))
    rollback_window_(params, snaps)
    undo_kept_window_(params, snaps, prev, foreach=foreach)
    for p, s, u, x in zip(params, snaps, prev, start):
        torch.testing.assert_close(p, x, rtol=0.0, atol=1e-6)
        assert torch.equal(s, p) and not u.any()
    undo_kept_window_([], [], [], foreach=foreach)


@pytest.mark.parametrize("foreach", [False, True])
def test_rollback_window_restores_the_snapshot(foreach: bool) -> None:
    params, snaps, prev = _tensors(torch.float32)
    params[0][0, 0] = math.nan
    kept = [t.clone() for t in (*snaps, *prev)]
    rollback_window_(params, snaps, foreach=foreach)
    for p, s in zip(params, snaps):
        assert torch.equal(p, s) and p.data_ptr() != s.data_ptr()
    for x, y in zip(kept, (*snaps, *prev)):
        assert torch.equal(x, y)


def test_reset_inner_momentum_zeroes_first_moments_and_nonfinite_entries_only() -> None:
    state = {
        "momentum_buffer": torch.ones(3),
        "exp_avg_sq": torch.tensor([1.0, math.inf, math.nan]),
        "step_size": torch.full((3,), 0.5),  # Rprop's per-entry step sizes must survive
        "step": torch.tensor(7.0),
        "tlr_prev_update": torch.tensor([math.nan, 1.0, 1.0]),  # TLR's own buffers are not touched
    }
    reset_inner_momentum_([state])
    assert state["momentum_buffer"].tolist() == [0.0, 0.0, 0.0]
    assert state["exp_avg_sq"].tolist() == [1.0, 0.0, 0.0]
    assert state["step_size"].tolist() == [0.5, 0.5, 0.5] and state["step"].item() == 7.0
    assert math.isnan(state["tlr_prev_update"][0].item())


def test_large_bf16_sums_accumulate_in_float() -> None:
    """A million bf16 entries: the dots upcast, so b is exact to float32 accuracy, not bf16's."""
    n = 1 << 20
    params = [torch.zeros(n, dtype=torch.bfloat16)]
    snaps = [torch.full((n,), 0.5, dtype=torch.bfloat16)]
    prev = [torch.ones(n, dtype=torch.bfloat16)]
    a, b, c = window_inner_products(params, snaps, prev, 0.5).tolist()
    assert a == n and b == n and c == n


def test_complex_tensors_use_the_real_inner_product() -> None:
    """Re<x, y>: a complex tensor and its real view give the same a, b and c (b = ||u_old||² >= 0)."""
    gen = torch.Generator().manual_seed(3)
    params = [torch.randn(4, 3, dtype=torch.complex64, generator=gen)]
    snaps = [params[0] + 0.1 * torch.randn(4, 3, dtype=torch.complex64, generator=gen)]
    prev = [1j * torch.randn(4, 3, dtype=torch.complex64, generator=gen)]
    sums = window_inner_products(params, snaps, prev, 0.1)
    as_real = [[torch.view_as_real(t) for t in ts] for ts in (params, snaps, prev)]
    sums_real = window_inner_products(*as_real, 0.1)
    torch.testing.assert_close(sums, sums_real)
    assert sums[1].item() > 0 and sums[2].item() > 0


def test_empty_window() -> None:
    sums = window_inner_products([], [], [], 0.1)
    assert sums.tolist() == [0.0, 0.0, 0.0]
    restart_window_([], [])  # no error
    advance_window_([], [], [], 0.1)
    rollback_window_([], [])


@pytest.mark.parametrize("foreach", [False, True])
def test_restart_window_copies_the_weights(foreach: bool) -> None:
    params, snaps, _ = _tensors(torch.float32)
    restart_window_(params, snaps, foreach=foreach)
    for p, s in zip(params, snaps):
        assert torch.equal(p, s) and p.data_ptr() != s.data_ptr()


def test_nonfinite_weights_propagate_to_the_sums() -> None:
    params, snaps, prev = _tensors(torch.float32)
    params[0][0, 0] = math.nan
    a, b, c = window_inner_products(params, snaps, prev, 0.1).tolist()
    assert math.isnan(a) and math.isfinite(b) and math.isnan(c)
    decision = newton_factor(a, b, gamma=0.33, max_factor=100.0)
    assert decision.status == "nonfinite" and decision.factor == 1.0


_STEP_COUNTING = {
    "Adam": {},
    "Adam-amsgrad": {"amsgrad": True},
    "AdamW": {},
    "NAdam": {},
    "RAdam": {},
    "Adamax": {},
    "Adam-foreach": {"foreach": True},
    "AdamW-fused": {"fused": True},
}


@pytest.mark.parametrize("name", sorted(_STEP_COUNTING))
def test_restarted_statistics_step_as_a_fresh_optimizer(name: str) -> None:
    """After a restart (with the first moments zeroed, as every rollback does), the next step is the one a
    freshly made optimizer takes from the same weights and gradient."""
    cls = getattr(torch.optim, name.split("-")[0])
    kwargs = {"lr": 0.01, **_STEP_COUNTING[name]}
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(6, 3))
    used = cls([weight], **kwargs)
    for scale in (1.0, 1e4, 1e4):  # blown-up gradients fill the second moments
        weight.grad = scale * torch.randn_like(weight)
        used.step()
    states = [used.state[weight]]
    reset_inner_momentum_(states)
    restart_inner_statistics_(states)
    fresh_weight = torch.nn.Parameter(weight.detach().clone())
    fresh = cls([fresh_weight], **kwargs)
    grad = torch.randn_like(weight)
    weight.grad, fresh_weight.grad = grad.clone(), grad.clone()
    used.step()
    fresh.step()
    torch.testing.assert_close(weight.detach(), fresh_weight.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adagrad", "Rprop", "Adadelta"])
def test_restart_leaves_statistics_without_a_step_count_alone(name: str) -> None:
    cls = getattr(torch.optim, name)
    kwargs = {"lr": 0.01, "momentum": 0.9} if name in ("SGD", "RMSprop") else {"lr": 0.01}
    weight = torch.nn.Parameter(torch.randn(4))
    opt = cls([weight], **kwargs)
    for _ in range(2):
        weight.grad = torch.randn_like(weight)
        opt.step()
    before = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state[weight].items()}
    restart_inner_statistics_([opt.state[weight]])
    for key, value in opt.state[weight].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(before[key])), key
