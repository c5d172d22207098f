"""TLR(host_sync=False): the paper's rule decided on the device, a tensor lr, no host sync in any step."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ntlr import TLR

K = 4


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


INNERS = {
    "SGD fused": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, fused=True),
    "Adam fused": lambda params: torch.optim.Adam(params, lr=1e-3, fused=True),
    "AdamW fused": lambda params: torch.optim.AdamW(params, lr=1e-3, fused=True),
}


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)) for _ in range(n)]


def _step(opt: TLR, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad()
    (model(x) - y).pow(2).mean().backward()
    opt.step()


@pytest.mark.parametrize("inner", sorted(INNERS))
def test_the_trajectory_is_the_synced_paths(inner: str) -> None:
    runs = []
    for host_sync in (True, False):
        model = _model()
        opt = TLR(INNERS[inner](model.parameters()), update_every=K, rule="paper", host_sync=host_sync)
        for x, y in _batches(10 * K):
            _step(opt, model, x, y)
        history = [(r.step, r.group, str(r.status), r.window_steps) for r in opt.history]
        numbers = torch.tensor([(r.a, r.b, r.c, r.factor, r.lr) for r in opt.history], dtype=torch.float64)
        weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        runs.append((history, numbers, weights, opt.get_lr()))
    (h_sync, n_sync, w_sync, lr_sync), (h_dev, n_dev, w_dev, lr_dev) = runs
    assert h_dev == h_sync and len(h_sync) == 10
    assert any(status == "updated" for _, _, status, _ in h_sync)  # not vacuous
    torch.testing.assert_close(n_dev, n_sync, rtol=1e-5, atol=1e-12)  # float32 rounding of the rate
    torch.testing.assert_close(w_dev, w_sync, rtol=1e-4, atol=1e-6)
    assert lr_dev == pytest.approx(lr_sync, rel=1e-5)


def test_no_step_reads_a_tensor_on_the_host(host_reads) -> None:
    model = _model()
    opt = TLR(INNERS["AdamW fused"](model.parameters()), update_every=K, rule="paper", host_sync=False)
    batches = _batches(6 * K)
    _step(opt, model, *batches[0])  # the inner optimizer's state is created on its first step
    reads = host_reads()
    for x, y in batches[1:]:
        _step(opt, model, x, y)
    assert reads.calls == 0
    assert isinstance(opt.param_groups[0]["lr"], float)  # the user's (scheduled) lr stays what it was
    assert len(opt.history) == 6  # read now: one conversion for all six meta-steps
    assert reads.calls == 1


class _HostData(TorchDispatchMode):
    """Counts tensors made from host numbers (``torch.tensor(...)``, ``torch.as_tensor(number)``): on an
    accelerator each is a host-to-device copy, which CUDA counts as a synchronizing operation."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in (torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default):
            self.made.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("inner", sorted(INNERS))
def test_no_step_makes_a_tensor_of_host_numbers(inner: str) -> None:
    """What a GPU's sync count saw (benchmarks/gpu_check.py on an H200: one sync in each of the first two
    meta-steps, whose window rates are still numbers) and the host-read count above cannot."""
    model = _model()
    opt = TLR(INNERS[inner](model.parameters()), update_every=K, rule="paper", host_sync=False)
    batches = _batches(6 * K)
    _step(opt, model, *batches[0])
    mode = _HostData()
    with mode:
        for x, y in batches[1:]:
            _step(opt, model, x, y)
    assert mode.made == []
    with mode:
        torch.tensor([1.0, 2.0])
    assert mode.made  # the count does see one


def test_the_synced_path_reads_once_per_meta_step(host_reads) -> None:
    """The contrast that makes the test above mean something."""
    model = _model()
    opt = TLR(INNERS["AdamW fused"](model.parameters()), update_every=K, rule="paper")
    batches = _batches(6 * K)
    _step(opt, model, *batches[0])
    reads = host_reads()
    for x, y in batches[1:]:
        _step(opt, model, x, y)
    assert reads.calls >= 5


@pytest.mark.parametrize(
    "kwargs",
    [{"rule": "robust"}, {"rule": "paper", "loss_guard": True}, {"rule": "paper", "total_steps": 100}],
)
def test_only_the_papers_rule_decides_on_the_device(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="host_sync"):
        TLR(INNERS["SGD fused"](_model().parameters()), update_every=K, host_sync=False, **kwargs)


def test_host_sync_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="host_sync"):
        TLR(INNERS["SGD fused"](_model().parameters()), update_every=K, rule="paper", host_sync=0)  # type: ignore[arg-type]


def _window_crossing_tensors(opt: TLR) -> dict[str, int]:
    """Where each tensor that one window hands the next lives: the trained factor, the buffers' scale,
    and every per-parameter state tensor (the inner optimizer's and TLR's window buffers)."""
    where = {}
    for i, meta in enumerate(opt.group_meta):
        for name in ("factor", "prev_scale"):
            value = getattr(meta, name)
            assert isinstance(value, torch.Tensor), name
            where[f"group {i} {name}"] = value.data_ptr()
    for j, (param, state) in enumerate(opt.state.items()):
        where[f"param {j}"] = param.data_ptr()
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                where[f"param {j} {key}"] = value.data_ptr()
    return where


@pytest.mark.parametrize("inner", sorted(INNERS))
def test_a_window_writes_what_it_hands_on_in_place(inner: str) -> None:
    """What makes a CUDA graph captured over one window of K steps replayable: every tensor the window
    reads from the previous one is written in place, never rebound (a rebound tensor would leave the
    graph reading the memory it was captured with). benchmarks/gpu_check.py captures and replays one on
    a GPU; here the property itself is checked."""
    model = _model()
    opt = TLR(INNERS[inner](model.parameters()), update_every=K, rule="paper", host_sync=False)
    batches = _batches(6 * K)
    for x, y in batches[: 3 * K]:  # past the first meta-steps, which create the device factor and scale
        _step(opt, model, x, y)
    where = _window_crossing_tensors(opt)
    factors = [meta.factor.clone() for meta in opt.group_meta]
    for x, y in batches[3 * K :]:
        _step(opt, model, x, y)
    assert _window_crossing_tensors(opt) == where
    assert all(meta.window_steps == 0 and meta.window_lr_sum == 0.0 for meta in opt.group_meta)
    assert [meta.factor for meta in opt.group_meta] != factors  # the factor did change, in place


def test_a_state_dict_keeps_the_factor_it_was_taken_with() -> None:
    model = _model()
    opt = TLR(INNERS["SGD fused"](model.parameters()), update_every=K, rule="paper", host_sync=False)
    batches = _batches(8 * K)
    for x, y in batches[: 3 * K]:
        _step(opt, model, x, y)
    saved = opt.state_dict()["param_groups"][0]
    factor, scale = saved["tlr_factor"].clone(), saved["tlr_prev_scale"].clone()
    for x, y in batches[3 * K :]:
        _step(opt, model, x, y)
    assert not torch.equal(opt.group_meta[0].factor, factor)
    assert torch.equal(saved["tlr_factor"], factor) and torch.equal(saved["tlr_prev_scale"], scale)
