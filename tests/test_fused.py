"""TLR(fused=True): the meta-step's sums and advance as compiled one-pass kernels, against the loop path.

The loop path is the ground truth: the advance must match it bit for bit (an elementwise difference and
two copies), the sums to float32 rounding (Inductor sums in another order than ``torch.dot``), and a
training run's decisions must be the loop path's. Compiling takes seconds: the module is marked slow.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ntlr import TLR, functional

pytestmark = pytest.mark.slow


def _tensors(dtype: torch.dtype, seed: int = 0) -> tuple[list[torch.Tensor], ...]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(300, 200), (77,), (5, 5, 3, 3)]
    params = [torch.randn(s, generator=g).to(dtype) for s in shapes]
    snapshots = [p + 0.01 * torch.randn(p.shape, generator=g).to(dtype) for p in params]
    prev = [0.01 * torch.randn(p.shape, generator=g).to(dtype) for p in params]
    return params, snapshots, prev


@pytest.mark.parametrize("old_norm", [True, False])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fused_sums_are_the_loop_paths_to_rounding(
    dtype: torch.dtype, old_norm: bool, weights: bool
) -> None:
    params, snapshots, prev = _tensors(dtype)
    kwargs = {"old_norm": old_norm, "weights": weights}
    fused, _ = functional.window_partials_and_directions(params, snapshots, prev, fused=True, **kwargs)
    loop, _ = functional.window_partials_and_directions(params, snapshots, prev, **kwargs)
    assert len(fused) == len(loop) == len(params) * (2 + old_norm + weights)
    got, want = torch.stack(fused).double(), torch.stack(loop).double()
    # Each sum's rounding scales with the sum of its terms' magnitudes (and the root of their count),
    # not with the sum: the a-sums cancel.
    magnitudes = []
    for o, s, w in zip(prev, snapshots, params):
        d = (s - w).double().abs()
        o, s = o.double().abs(), s.double().abs()
        magnitudes.append([(o * d).sum(), (o * o).sum(), (d * d).sum(), (s * s).sum()])
    rows = [0, 1, 2, 3] if old_norm else [0, 2, 3]
    rows = rows if weights else rows[:-1]
    terms = torch.tensor([[m[row] for m in magnitudes] for row in rows]).reshape(-1)
    eps = torch.finfo(dtype).eps
    counts = torch.tensor([p.numel() for p in params] * len(rows), dtype=torch.float64)
    assert ((got - want).abs() <= 2 * eps * counts.sqrt() * terms).all()
    assert not torch.equal(got, torch.zeros_like(got))


def test_the_fused_products_scale_as_the_loop_paths() -> None:
    params, snapshots, prev = _tensors(torch.float32)
    fused, _ = functional.window_products_and_directions(
        params, snapshots, prev, 0.1, old_scale=0.2, fused=True
    )
    loop, _ = functional.window_products_and_directions(params, snapshots, prev, 0.1, old_scale=0.2)
    torch.testing.assert_close(fused, loop, rtol=1e-5, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.complex64])
def test_dtypes_it_does_not_fuse_take_the_loop_path(dtype: torch.dtype) -> None:
    params, snapshots, prev = _tensors(torch.float32)
    params, snapshots, prev = ([t.to(dtype) for t in ts] for ts in (params, snapshots, prev))
    fused, _ = functional.window_partials_and_directions(params, snapshots, prev, fused=True)
    loop, _ = functional.window_partials_and_directions(params, snapshots, prev)
    assert all(torch.equal(f, g) for f, g in zip(fused, loop))


def test_the_fused_advance_is_the_loop_paths_bit_for_bit() -> None:
    params, snapshots, prev = _tensors(torch.float32)
    # One buffer pair not contiguous: written through the loop path's ops, still in place.
    snapshots[0] = snapshots[0].t().contiguous().t()
    prev[0] = prev[0].t().contiguous().t()
    params[0] = params[0].t().contiguous().t()
    runs = []
    for fused in (True, False):
        snaps = [s.clone().as_strided(s.shape, s.stride()) for s in snapshots]
        olds = [o.clone().as_strided(o.shape, o.stride()) for o in prev]
        ids = [t.data_ptr() for t in snaps + olds]
        functional.advance_window_(params, snaps, olds, 0.1, fused=fused, keep_scale=True)
        assert [t.data_ptr() for t in snaps + olds] == ids  # in place
        runs.append(snaps + olds)
    assert all(torch.equal(f, g) for f, g in zip(*runs))
    assert all(torch.equal(s, p) for s, p in zip(runs[0][: len(params)], params))


INNERS = {
    "SGD m0.9": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    "SGD m0.8 wd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.8, weight_decay=5e-4),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=3e-3),
}


def _run(inner: str, rule: str, fused: bool, sketch: int | None = None) -> TLR:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 3))
    opt = TLR(INNERS[inner](model.parameters()), update_every=10, rule=rule, fused=fused, sketch=sketch)
    g = torch.Generator().manual_seed(1)
    for _ in range(120):
        x, y = torch.randn(16, 20, generator=g), torch.randn(16, 3, generator=g)
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        if opt.observes_loss:
            opt.observe_loss(loss)
        loss.backward()
        opt.step()
    return opt


@pytest.mark.parametrize("rule", ["robust", "paper"])
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_a_fused_run_decides_as_the_loop_path(inner: str, rule: str) -> None:
    fused, loop = _run(inner, rule, True), _run(inner, rule, False)
    assert [str(r.status) for r in fused.history] == [str(r.status) for r in loop.history]
    assert len(loop.history) >= 10
    assert [r.lr for r in fused.history] == pytest.approx([r.lr for r in loop.history], rel=1e-4)


def test_a_sketched_fused_run_decides_as_the_loop_path() -> None:
    """With ``sketch`` the weights are read through strided views: the compiled sums take them as they are."""
    fused, loop = _run("SGD m0.9", "robust", True, sketch=4), _run("SGD m0.9", "robust", False, sketch=4)
    assert [str(r.status) for r in fused.history] == [str(r.status) for r in loop.history]
    assert [r.lr for r in fused.history] == pytest.approx([r.lr for r in loop.history], rel=1e-4)


def test_fused_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="fused"):
        TLR(torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1), update_every=5, fused=1)  # type: ignore[arg-type]


def test_the_fused_kernel_is_compiled_not_run_eagerly() -> None:
    """A kernel that failed to compile would still give the right sums, eagerly: make sure it compiled."""
    torch._dynamo.reset()
    functional._FUSED.clear()
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    params, snapshots, prev = _tensors(torch.float32)
    functional.window_partials_and_directions(params, snapshots, prev, fused=True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > before


def test_tensors_off_the_cpu_take_the_usual_paths() -> None:
    """On GPUs Inductor's dynamic-length reductions ran 9-25x slower than the foreach path (docs/gpu.md)."""
    on_meta = torch.empty(8, device="meta")
    assert not functional._fuses(on_meta, on_meta, on_meta)
    assert functional._fuses(*(torch.empty(8) for _ in range(3)))


def test_a_machine_where_torch_compile_fails_still_trains_eagerly(monkeypatch) -> None:
    """No C++ compiler (or a broken Inductor) must not end a run at its first meta-step: warn, go on."""

    def broken(fn, **_: object):  # type: ignore[no-untyped-def]
        def call(*args: object) -> object:
            raise RuntimeError("no C++ compiler found")

        return call

    monkeypatch.setattr(functional, "_FUSED", {})
    monkeypatch.setattr(functional.torch, "compile", broken)
    params, snapshots, prev = _tensors(torch.float32)
    with pytest.warns(RuntimeWarning, match="fused=True.*no C\\+\\+ compiler.*eagerly"):
        fused, _ = functional.window_partials_and_directions(params, snapshots, prev, fused=True)
    loop, _ = functional.window_partials_and_directions(params, snapshots, prev)
    torch.testing.assert_close(torch.stack(fused), torch.stack(loop), rtol=1e-4, atol=1e-3)
    snaps = [s.clone() for s in snapshots]
    olds = [o.clone() for o in prev]
    functional.advance_window_(params, snaps, olds, 0.1, fused=True, keep_scale=True)  # warns once more
    assert all(torch.equal(s, p) for s, p in zip(snaps, params))
