"""A whole training step of a small model with ``ntlr.TLR`` against its bare inner optimizer, side by side.

The small-model case is where TLR's per-step Python cost shows most (a step of an MLP 64-256-10 on digits
at batch 32 takes well under a millisecond). Each variant trains its own copy of the model on the same
batches; the variants run interleaved in blocks of ``--block`` steps (bare, TLR, TLR + loss, bare, ...),
so a shared machine's load drifts hit all alike, and the table shows the median over blocks of the mean
step time and of the per-block ratio to the bare optimizer. A block holds whole windows (K divides it),
so each holds its meta-steps in the right proportion.

* ``bare``: SGD momentum 0.9, the loop ``zero_grad; loss = f(model(x)); loss.backward(); step()``;
* ``tlr``: the same under ``TLR(update_every=K)`` with a rule that reads no loss (the paper's rule);
* ``tlr+loss``: the default rule with the loss fed by ``opt.observe_loss(loss)`` (the README's loop).

    python benchmarks/step_overhead.py [--threads 1] [--blocks 9] [--block 200] [--k 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import ntlr

Variant = Callable[[], None]


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y)


def make_variant(kind: str, x: torch.Tensor, y: torch.Tensor, k: int, batch: int) -> Variant:
    """One training step of ``kind`` on its own model copy, cycling through fixed batches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    inner = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    opt: torch.optim.Optimizer = inner
    if kind == "tlr":
        opt = ntlr.TLR(inner, update_every=k, rule="paper")
    elif kind == "tlr+loss":
        opt = ntlr.TLR(inner, update_every=k, rule=ntlr.RobustRule(momentum_windows=0))
    feed = kind == "tlr+loss"
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    batches = [(x[order[i : i + batch]], y[order[i : i + batch]]) for i in range(0, len(x) - batch, batch)]
    position = 0

    def step() -> None:
        nonlocal position
        xb, yb = batches[position % len(batches)]
        position += 1
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        if feed:
            opt.observe_loss(loss)  # type: ignore[attr-defined]
        opt.step()

    return step


def run(kinds: tuple[str, ...], *, blocks: int, block: int, k: int, batch: int) -> dict[str, list[float]]:
    """Per kind, the mean step time (s) of each block."""
    if block % k:
        raise ValueError(f"--block ({block}) must be a multiple of --k ({k}): whole windows per block")
    x, y = _digits()
    variants = {kind: make_variant(kind, x, y, k, batch) for kind in kinds}
    for variant in variants.values():  # warm-up: a few windows each
        for _ in range(3 * k):
            variant()
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(blocks):
        for kind, variant in variants.items():
            start = time.perf_counter()
            for _ in range(block):
                variant()
            times[kind].append((time.perf_counter() - start) / block)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kinds = ("bare", "tlr", "tlr+loss")
    times = run(kinds, blocks=args.blocks, block=args.block, k=args.k, batch=args.batch)
    print(
        f"torch {torch.__version__}, ntlr {ntlr.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), load average {os.getloadavg()[0]:.2f} at the end; "
        "MLP 64-256-10 on digits, "
        f"batch {args.batch}, K = {args.k}, {args.blocks} interleaved blocks of {args.block} steps"
    )
    print()
    print("| variant | step (µs, median of blocks) | ratio to bare (median of per-block ratios) |")
    print("|---|---|---|")
    for kind in kinds:
        ratios = [t / b for t, b in zip(times[kind], times["bare"], strict=True)]
        print(f"| {kind} | {statistics.median(times[kind]) * 1e6:.0f} | {statistics.median(ratios):.3f} |")


if __name__ == "__main__":
    main()
