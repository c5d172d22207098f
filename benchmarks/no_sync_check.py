"""``TLR(rule="paper", host_sync=False)`` on an accelerator: no host sync in any step, the synced path's
trajectory, and the time per step of both, side by side in one run.

On CUDA the steps run under ``torch.cuda.set_sync_debug_mode("error")`` (after the inner optimizer's first
step, which creates its state): any host sync in a step, a meta-step included, raises. On the CPU, where
nothing syncs, the script counts tensor-to-host reads instead (``item``, ``tolist``, ``float``, ``bool``),
so it runs and checks the same thing anywhere; a prepared check for a lent GPU machine:

    python benchmarks/no_sync_check.py --device cuda [--steps 400] [--k 20]

Prints per inner optimizer (fused AdamW, fused SGD with momentum): the host reads or syncs seen in the
steps, the largest relative difference of the trained rate and of the weights from the synced path, and
the median time per step (synced, no-sync, bare) over interleaved blocks.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

import ntlr

INNERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "AdamW fused": lambda params: torch.optim.AdamW(params, lr=1e-3, fused=True),
    "SGD m0.9 fused": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, fused=True),
}
_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")


@contextmanager
def host_reads(device: torch.device) -> Iterator[list[int]]:
    """Counts host reads of tensors inside the block (CPU), or makes any host sync raise (CUDA)."""
    count = [0]
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield count
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return
    originals = {name: getattr(torch.Tensor, name) for name in _READS}

    def counting(original: Callable[..., object]) -> Callable[..., object]:
        def read(*args: object, **kwargs: object) -> object:
            count[0] += 1
            return original(*args, **kwargs)

        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(original))
    try:
        yield count
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def make(inner: str, mode: str, device: torch.device, k: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 1024), nn.GELU(), nn.Linear(1024, 10)
    )
    model = model.to(device)
    opt = INNERS[inner](list(model.parameters()))
    if mode != "bare":
        opt = ntlr.TLR(opt, update_every=k, rule="paper", host_sync=mode == "synced")
    return model, opt


def batches(n: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(64, 256, generator=g).to(device), torch.randint(0, 10, (64,), generator=g).to(device))
        for _ in range(n)
    ]


def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def check(inner: str, device: torch.device, steps: int, k: int) -> dict[str, float]:
    data = batches(steps, device)
    runs = {}
    reads = 0
    for mode in ("synced", "no-sync"):
        model, opt = make(inner, mode, device, k)
        step(model, opt, *data[0])
        if mode == "no-sync":
            with host_reads(device) as count:
                for x, y in data[1:]:
                    step(model, opt, x, y)
            reads = count[0]
        else:
            for x, y in data[1:]:
                step(model, opt, x, y)
        assert isinstance(opt, ntlr.TLR)
        runs[mode] = (
            torch.tensor(opt.get_lr()),
            torch.cat([p.detach().reshape(-1) for p in model.parameters()]),
        )
    rate = ((runs["no-sync"][0] - runs["synced"][0]).abs() / runs["synced"][0]).max().item()
    weights = ((runs["no-sync"][1] - runs["synced"][1]).norm() / runs["synced"][1].norm()).item()
    return {"reads": reads, "rate_rel_diff": rate, "weights_rel_diff": weights}


def timing(inner: str, device: torch.device, k: int, blocks: int) -> dict[str, float]:
    data = batches(k, device)
    variants = {mode: make(inner, mode, device, k) for mode in ("bare", "synced", "no-sync")}
    times: dict[str, list[float]] = {mode: [] for mode in variants}
    for _ in range(blocks + 1):
        for mode, (model, opt) in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for x, y in data:
                step(model, opt, x, y)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[mode].append((time.perf_counter() - start) / len(data))
    return {mode: statistics.median(values[1:]) for mode, values in times.items()}  # the first block warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # a shared machine: more threads collapse
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, ntlr {ntlr.__version__}, {name}; K = {args.k}, {args.steps} steps")
    print(
        "| inner | host reads/syncs in the steps | rate rel. diff | weights rel. diff "
        "| step µs: bare / synced / no-sync |"
    )
    print("|---|---|---|---|---|")
    for inner in INNERS:
        result = check(inner, device, args.steps, args.k)
        t = timing(inner, device, args.k, args.blocks)
        print(
            f"| {inner} | {result['reads']} | {result['rate_rel_diff']:.1e} | "
            f"{result['weights_rel_diff']:.1e} | "
            + " / ".join(f"{t[mode] * 1e6:.0f}" for mode in ("bare", "synced", "no-sync"))
            + " |"
        )


if __name__ == "__main__":
    main()
