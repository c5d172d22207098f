"""The model, data and training loops shared by the 2-process workers and the single-process references.

Every scenario trains the same tiny MLP on the same global batches; a distributed run gives each of its
data-parallel ranks an equal slice of the batch, so with mean losses its averaged gradients are the
single-process gradients and its learning-rate trajectory must match the reference up to float rounding.
Every scenario runs under each rule (the contracts hold for all): the robust rule reads the loss, which
each rank feeds as the mean over the ranks (the full batch's loss), and its windows last the inner
optimizer's momentum horizon (10 steps here), so its runs are longer.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import ntlr
from ntlr import TLR, per_layer_param_groups

IN, HIDDEN, OUT = 6, 10, 3
GLOBAL_BATCH = 8
UPDATE_EVERY = 3
META_STEPS = 6  # per run
RULES = tuple(sorted(ntlr.RULES))


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, OUT))


def global_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(GLOBAL_BATCH, IN, generator=gen)
    target = torch.sin(x[:, :OUT] * 2.0) + 0.1 * torch.randn(GLOBAL_BATCH, OUT, generator=gen)
    return x, target


def local_batch(step: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, target = global_batch(step)
    per_rank = GLOBAL_BATCH // world
    return x[rank * per_rank : (rank + 1) * per_rank], target[rank * per_rank : (rank + 1) * per_rank]


INNER: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    "adam": lambda params: torch.optim.Adam(params, lr=0.01),
}


def make_tlr(params: Any, inner: str, rule: str, **kwargs: Any) -> TLR:
    return TLR(INNER[inner](params), update_every=UPDATE_EVERY, rule=rule, gamma=0.5, **kwargs)


@functools.cache
def window(inner: str, rule: str) -> int:
    """The window length in steps (the robust rule's lasts the momentum's horizon)."""
    opt = make_tlr([nn.Parameter(torch.zeros(1))], inner, rule)
    length = getattr(opt.rule, "window_length", None)
    return UPDATE_EVERY if length is None else length(UPDATE_EVERY, opt.param_groups[0])


def steps(inner: str, rule: str) -> int:
    return META_STEPS * window(inner, rule)


def split(inner: str, rule: str) -> int:
    """Where the checkpoint scenarios save: mid-window, 3 meta-steps done, one step into the fourth."""
    return 3 * window(inner, rule) + 1


def observe(opt: TLR, loss: torch.Tensor) -> None:
    """Feed a rule that reads the loss the full batch's loss: the mean of the ranks' (equal-sized) losses,
    the same on every rank."""
    if not opt.observes_loss:
        return
    import torch.distributed as dist

    loss = loss.detach().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(loss)
        loss /= dist.get_world_size()
    opt.observe_loss(loss)


def train(
    model: nn.Module,
    opt: TLR,
    steps: range,
    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
) -> None:
    for step in steps:
        x, target = batch(step)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        observe(opt, loss)
        opt.step()


def trajectory(opt: TLR) -> dict[str, list[Any]]:
    """What the tests compare: every meta-step's a, b, decision and resulting rate."""
    return {
        "a": [r.a for r in opt.history],
        "b": [r.b for r in opt.history],
        "status": [r.status for r in opt.history],
        "lr": [r.lr for r in opt.history],
        "group": [r.group for r in opt.history],
    }


def param_groups(model: nn.Module, per_layer: bool) -> Any:
    return per_layer_param_groups(model) if per_layer else model.parameters()


@functools.cache
def reference(inner: str, rule: str, per_layer: bool = False) -> dict[str, Any]:
    """The single-process run on the full global batches (cached: treat as read-only)."""
    model = make_model()
    opt = make_tlr(param_groups(model, per_layer), inner, rule)
    train(model, opt, range(steps(inner, rule)), global_batch)
    return {**trajectory(opt), "params": {k: v.detach().clone() for k, v in model.state_dict().items()}}


# -- the 2-process side ------------------------------------------------------------------------------------
def _full_params(model: nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    out = {}
    for name, value in model.state_dict().items():
        value = value.full_tensor() if isinstance(value, DTensor) else value
        out[name.removeprefix("module.")] = value.detach().clone()
    return out


def _run_ddp(rank: int, world: int, inner: str, rule: str) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel

    model = DistributedDataParallel(make_model())
    opt = make_tlr(model.parameters(), inner, rule)
    train(model, opt, range(steps(inner, rule)), lambda s: local_batch(s, rank, world))
    return {**trajectory(opt), "params": _full_params(model)}


def _fsdp2_model(mesh: Any) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    model = make_model()
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _dp_rank(mesh: Any) -> tuple[int, int]:
    """This rank's slice of the batch: every rank of the mesh is a data-parallel rank."""
    return mesh.get_rank(), mesh.size()


def _run_fsdp2(mesh: Any, inner: str, rule: str) -> dict[str, Any]:
    model = _fsdp2_model(mesh)
    opt = make_tlr(model.parameters(), inner, rule)
    rank, world = _dp_rank(mesh)
    train(model, opt, range(steps(inner, rule)), lambda s: local_batch(s, rank, world))
    param = next(iter(model.parameters()))
    buffers = opt.state[param]
    return {
        **trajectory(opt),
        "params": _full_params(model),
        "placements": [type(p).__name__ for p in param.placements],
        "buffer_types": sorted({type(buffers[k]).__name__ for k in ("tlr_snapshot", "tlr_prev_update")}),
    }


def _run_flat_shards(rank: int, world: int, inner: str, rule: str, reduce: bool) -> dict[str, Any]:
    """ZeRO-style flat shards: each rank's optimizer owns a plain-tensor slice of the flattened weights."""
    import torch.distributed as dist

    model = make_model()
    params = list(model.parameters())
    numel = sum(p.numel() for p in params)
    per_rank = -(-numel // world)
    lo, hi = rank * per_rank, min((rank + 1) * per_rank, numel)
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    shard = nn.Parameter(flat[lo:hi].clone())
    opt = make_tlr([shard], inner, rule, process_group=dist.group.WORLD if reduce else None)
    for step in range(steps(inner, rule)):
        x, target = local_batch(step, rank, world)
        model.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        grad = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(grad)
        shard.grad = grad[lo:hi] / world
        observe(opt, loss)
        opt.step()
        pieces = [torch.empty(per_rank) for _ in range(world)]
        dist.all_gather(pieces, torch.nn.functional.pad(shard.detach(), (0, per_rank - shard.numel())))
        new_flat = torch.cat(pieces)[:numel]
        with torch.no_grad():
            offset = 0
            for p in params:
                p.copy_(new_flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
    return {**trajectory(opt), "params": _full_params(model)}


def _run_fsdp1(inner: str, rule: str) -> dict[str, Any]:
    """FSDP1 with ``use_orig_params``: the optimizer sees plain flat pieces (some empty) of each weight."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = FullyShardedDataParallel(make_model(), use_orig_params=True, device_id=torch.device("cpu"))
    opt = make_tlr(model.parameters(), inner, rule, process_group=dist.group.WORLD)
    rank, world = dist.get_rank(), dist.get_world_size()
    train(model, opt, range(steps(inner, rule)), lambda s: local_batch(s, rank, world))
    return {**trajectory(opt), "params": _full_params(model)}


def _run_mixed(mesh: Any, inner: str, rule: str, per_layer: bool) -> dict[str, Any]:
    """Layer 0 sharded with FSDP2, layer 2 replicated with hand-averaged gradients: two reduction keys,
    in one param group (summed over both) or in one group each."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    model = make_model()
    fully_shard(model[0], mesh=mesh)
    opt = make_tlr(param_groups(model, per_layer), inner, rule)
    rank, world = _dp_rank(mesh)
    replicated = list(model[2].parameters())
    for step in range(steps(inner, rule)):
        x, target = local_batch(step, rank, world)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        for param in replicated:
            dist.all_reduce(param.grad)
            param.grad /= world
        observe(opt, loss)
        opt.step()
    return {**trajectory(opt), "params": _full_params(model)}


def _with_frozen(model: nn.Module, value: float) -> nn.Module:
    """``model`` with a parameter its forward never uses, holding ``value`` (Adagrad makes state for it, so
    TLR tracks it: a frozen NaN one must not stall the rate, on one process or sharded)."""
    model.register_parameter("frozen", nn.Parameter(torch.full((4,), value)))
    return model


def make_frozen_tlr(params: Any, rule: str) -> TLR:
    return TLR(torch.optim.Adagrad(params, lr=0.05), update_every=UPDATE_EVERY, rule=rule, gamma=0.5)


@functools.cache
def reference_frozen(rule: str, value: float) -> dict[str, Any]:
    """The single-process run of :func:`_with_frozen` (cached: treat as read-only)."""
    model = _with_frozen(make_model(), value)
    opt = make_frozen_tlr(model.parameters(), rule)
    train(model, opt, range(META_STEPS * UPDATE_EVERY * 4), global_batch)
    return {**trajectory(opt), "params": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def _run_fsdp2_frozen(mesh: Any, rule: str) -> dict[str, Any]:
    """FSDP2 shards the frozen NaN parameter too: every rank's window sums are NaN, and every rank sums
    again without it (a second all_reduce, on all ranks or none)."""
    from torch.distributed.fsdp import fully_shard

    model = _with_frozen(make_model(), math.nan)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = make_frozen_tlr(model.parameters(), rule)
    rank, world = _dp_rank(mesh)
    train(model, opt, range(META_STEPS * UPDATE_EVERY * 4), lambda s: local_batch(s, rank, world))
    return {**trajectory(opt), "params": _full_params(model)}


def _tlr_entries(opt: Any) -> list[dict[str, Any]]:
    """A copy of TLR's per-group entries as its state dict holds them (the rule state included)."""
    return [
        copy.deepcopy({k: v for k, v in group.items() if k.startswith("tlr_")})
        for group in opt.state_dict()["param_groups"]
    ]


def _run_dcp(mesh: Any, inner: str, rule: str, checkpoint_dir: str, flatten: bool) -> dict[str, Any]:
    """Train ``split`` steps, checkpoint with DCP, go on; then resume a fresh model from the checkpoint."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )
    from torch.distributed.tensor import DTensor

    options = StateDictOptions(flatten_optimizer_state_dict=flatten)
    rank, world = _dp_rank(mesh)
    save_at, total = split(inner, rule), steps(inner, rule)

    def batch(s: int) -> tuple[torch.Tensor, torch.Tensor]:
        return local_batch(s, rank, world)

    # DCP's initialising step (lr 0, zero grads) on a fresh optimizer must not move anything or count. It
    # does advance Adam's own step counter, so the trained pair below is a different one.
    probe = _fsdp2_model(mesh)
    probe_opt = make_tlr(probe.parameters(), inner, rule)
    before = _full_params(probe)
    get_optimizer_state_dict(probe, probe_opt, options=options)
    init_ok = all(m.steps == 0 and m.window_steps == 0 for m in probe_opt.group_meta) and all(
        torch.equal(before[k], v) for k, v in _full_params(probe).items()
    )

    model = _fsdp2_model(mesh)
    opt = make_tlr(model.parameters(), inner, rule)
    train(model, opt, range(save_at), batch)
    dcp.save(
        {
            "model": get_model_state_dict(model),
            "optim": get_optimizer_state_dict(model, opt, options=options),
        },
        checkpoint_id=checkpoint_dir,
    )
    saved_history = len(opt.history)
    saved_groups = _tlr_entries(opt)
    train(model, opt, range(save_at, total), batch)
    uninterrupted = {**trajectory(opt), "params": _full_params(model)}

    fresh = _fsdp2_model(mesh)
    fresh_opt = make_tlr(fresh.parameters(), inner, rule)
    state = {
        "model": get_model_state_dict(fresh),
        "optim": get_optimizer_state_dict(fresh, fresh_opt, options=options),
    }
    dcp.load(state, checkpoint_id=checkpoint_dir)
    set_model_state_dict(fresh, state["model"])
    set_optimizer_state_dict(fresh, fresh_opt, state["optim"], options=options)
    restored_groups = _tlr_entries(fresh_opt)
    buffer_types = sorted(
        {
            type(fresh_opt.state[p][k]).__name__
            for p in fresh.parameters()
            for k in ("tlr_snapshot", "tlr_prev_update")
        }
    )
    train(fresh, fresh_opt, range(save_at, total), batch)
    return {
        "uninterrupted": uninterrupted,
        "saved_history": saved_history,
        "resumed": {**trajectory(fresh_opt), "params": _full_params(fresh)},
        "restored_groups": restored_groups,
        "saved_groups": saved_groups,
        "buffer_types": buffer_types,
        "init_ok": init_ok,
        "is_dtensor": isinstance(next(iter(fresh.parameters())), DTensor),
    }


def scenarios(rank: int, world: int, workdir: str) -> dict[str, Callable[[], dict[str, Any]]]:
    from torch.distributed.device_mesh import init_device_mesh

    out: dict[str, Callable[[], dict[str, Any]]] = {}
    for rule in RULES:
        for inner in INNER:
            out[f"ddp_{inner}_{rule}"] = lambda inner=inner, rule=rule: _run_ddp(rank, world, inner, rule)
            out[f"fsdp2_{inner}_{rule}"] = lambda inner=inner, rule=rule: _run_fsdp2(
                init_device_mesh("cpu", (world,)), inner, rule
            )
            for shape in ((2, 1), (1, 2)):
                out[f"hsdp_{shape[0]}x{shape[1]}_{inner}_{rule}"] = (
                    lambda inner=inner, rule=rule, shape=shape: _run_fsdp2(
                        init_device_mesh("cpu", shape, mesh_dim_names=("replicate", "shard")), inner, rule
                    )
                )
            out[f"fsdp1_{inner}_{rule}"] = lambda inner=inner, rule=rule: _run_fsdp1(inner, rule)
            for per_layer in (False, True):
                out[f"mixed_{'layers' if per_layer else 'group'}_{inner}_{rule}"] = (
                    lambda inner=inner, rule=rule, per_layer=per_layer: _run_mixed(
                        init_device_mesh("cpu", (world,)), inner, rule, per_layer
                    )
                )
            if inner == "sgd":  # once per rule: the inner optimizer is Adagrad's
                out[f"fsdp2_frozen_{rule}"] = lambda rule=rule: _run_fsdp2_frozen(
                    init_device_mesh("cpu", (world,)), rule
                )
            out[f"flat_{inner}_{rule}"] = lambda inner=inner, rule=rule: _run_flat_shards(
                rank, world, inner, rule, reduce=True
            )
            out[f"flat_noreduce_{inner}_{rule}"] = lambda inner=inner, rule=rule: _run_flat_shards(
                rank, world, inner, rule, reduce=False
            )
            for flatten in (False, True):
                name = f"dcp_{inner}_{'flat' if flatten else 'nested'}_{rule}"
                out[name] = lambda inner=inner, rule=rule, flatten=flatten, name=name: _run_dcp(
                    init_device_mesh("cpu", (world,)), inner, rule, f"{workdir}/{name}", flatten
                )
    return out


def worker(rank: int, world: int, port: int, workdir: str) -> None:
    """One rank: run every scenario, record its result or its traceback, save them for the tests."""
    import datetime
    import os
    import time
    import traceback

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    results: dict[str, Any] = {}
    try:
        for name, run in scenarios(rank, world, workdir).items():
            try:
                start = time.perf_counter()
                results[name] = run()
                results[name]["seconds"] = time.perf_counter() - start
            except Exception:
                results[name] = {"error": traceback.format_exc()}
                # A rank that failed half-way leaves its peer inside a collective: stop here.
                break
            dist.barrier()
    finally:
        torch.save(results, f"{workdir}/rank{rank}.pt")
        dist.destroy_process_group()


# -- comparisons -------------------------------------------------------------------------------------------
def assert_same_trajectory(got: dict[str, Any], want: dict[str, Any], rel: float = 1e-5) -> None:
    """Same decisions and, up to float rounding of differently ordered sums, the same a, b and rates."""
    assert got["status"] == want["status"]
    assert got["group"] == want["group"]
    for key in ("a", "b", "lr"):
        assert len(got[key]) == len(want[key])
        for i, (x, y) in enumerate(zip(got[key], want[key])):
            assert abs(x - y) <= rel * max(abs(y), 1e-6), f"{key}[{i}]: {x} vs {y}"
    for name, value in want["params"].items():
        torch.testing.assert_close(got["params"][name], value, rtol=1e-4, atol=1e-5)


def scenario(results: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The named scenario's result on every rank; fails with the worker's traceback if it raised."""
    per_rank = []
    for rank, by_name in enumerate(results):
        if name not in by_name:
            pytest.fail(f"scenario {name} did not run on rank {rank} (an earlier one failed)")
        if "error" in by_name[name]:
            pytest.fail(f"scenario {name} raised on rank {rank}:\n{by_name[name]['error']}")
        per_rank.append(by_name[name])
    return per_rank
