"""A whole training step of a small model with ``ntlr.TLR`` against its bare inner optimizer, side by side.

The small-model case is where TLR's per-step Python cost shows most (a step of an MLP 64-256-10 on digits
at batch 32 takes well under a millisecond). Each variant trains its own copy of the model on the same
batches; the variants run interleaved in blocks of ``--block`` steps (bare, TLR, TLR + loss, bare, ...),
so a shared machine's load drifts hit all alike, and the table shows the median over blocks of the mean
step time and of the per-block ratio to the bare optimizer. A block holds whole windows (K divides it),
so each holds its meta-steps in the right proportion.

* ``bare``: SGD momentum 0.9, the loop ``zero_grad; loss = f(model(x)); loss.backward(); step()``;
* ``tlr``: the same under ``TLR(update_every=K)`` with a rule that reads no loss (the paper's rule);
* ``tlr+loss``: the default rule with the loss fed by ``opt.observe_loss(loss)`` (the README's loop);
* ``bare, plain zero_grad``: ``bare`` with the grads set to None by a plain loop instead of torch's
  ``zero_grad``, as ``TLR.zero_grad`` does (torch's opens an unrecorded profiler range and a Dynamo guard):
  against this row, the TLR rows' ratios are TLR's own cost (the meta-step and its bookkeeping), against
  ``bare`` what a user of torch's loop sees.

``--compare-src DIR`` adds the two TLR variants of a second copy of the library, imported from ``DIR`` (a
``src`` folder holding ``ntlr``, e.g. an older commit's, exported with ``git archive COMMIT | tar x``) under
another module name, into the same interleaving: a before/after comparison in one process, on the same
batches, under the same load (the rows are labelled with ``--compare-label``).

    python benchmarks/step_overhead.py [--threads 1] [--blocks 9] [--block 200] [--k 20]
        [--compare-src DIR --compare-label NAME]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from types import ModuleType

import torch
from torch import nn

import ntlr
from compare_library import load_library

Variant = Callable[[], None]


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y)


def make_variant(
    kind: str, x: torch.Tensor, y: torch.Tensor, k: int, batch: int, library: ModuleType = ntlr
) -> Variant:
    """One training step of ``kind`` on its own model copy, cycling through fixed batches; ``kind`` is
    ``bare``, ``bare, plain zero_grad``, ``tlr`` or ``tlr+loss``, TLR taken from ``library``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    inner = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    opt: torch.optim.Optimizer = inner
    if kind == "tlr":
        opt = library.TLR(inner, update_every=k, rule="paper")
    elif kind == "tlr+loss":
        opt = library.TLR(inner, update_every=k, rule=library.RobustRule(momentum_windows=0))
    feed = kind == "tlr+loss"
    params = list(model.parameters())
    plain_zero = kind == "bare, plain zero_grad"
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    batches = [(x[order[i : i + batch]], y[order[i : i + batch]]) for i in range(0, len(x) - batch, batch)]
    position = 0

    def step() -> None:
        nonlocal position
        xb, yb = batches[position % len(batches)]
        position += 1
        if plain_zero:
            for param in params:
                param.grad = None
        else:
            opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        torch.autograd.backward(loss)
        if feed:
            opt.observe_loss(loss)  # type: ignore[attr-defined]
        opt.step()

    return step


def run(
    kinds: tuple[str, ...],
    *,
    blocks: int,
    block: int,
    k: int,
    batch: int,
    compare: ModuleType | None = None,
    label: str = "compared",
) -> dict[str, list[float]]:
    """Per variant, the mean step time (s) of each block. The variants are ``kinds``, and with ``compare``
    its TLR kinds again on that library, named ``"{kind} [{label}]"``; the order rotates every block."""
    if block % k:
        raise ValueError(f"--block ({block}) must be a multiple of --k ({k}): whole windows per block")
    x, y = _digits()
    variants = {kind: make_variant(kind, x, y, k, batch) for kind in kinds}
    if compare is not None:
        for kind in kinds:
            if kind.startswith("tlr"):
                variants[f"{kind} [{label}]"] = make_variant(kind, x, y, k, batch, compare)
    for variant in variants.values():  # warm-up: a few windows each
        for _ in range(3 * k):
            variant()
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(blocks):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            variant = variants[name]
            start = time.perf_counter()
            for _ in range(block):
                variant()
            times[name].append((time.perf_counter() - start) / block)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--compare-src", default=None, help="a src folder holding another copy of ntlr")
    parser.add_argument("--compare-label", default="compared", help="its rows' label (e.g. a commit)")
    parser.add_argument(
        "--keep-denormals",
        action="store_true",
        help="do not flush denormal floats to zero (then a trajectory's arithmetic speed is measured too)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Each variant trains its own copy, and their trajectories differ: a copy whose ReLUs died gets zero
    # gradients there, and its momentum decays into denormal floats, which x86 processors compute on
    # 10-100x slower (measured 2026-12-04 on an Intel Xeon: the paper's rule drove its copy to lr 3.8, dead,
    # and its optimizer step took 229 µs against 66 µs). That is the trajectory's cost, not TLR's: flush
    # denormals to zero in every variant alike.
    if not args.keep_denormals:
        torch.set_flush_denormal(True)
    compare = None if args.compare_src is None else load_library(args.compare_src)
    kinds = ("bare", "bare, plain zero_grad", "tlr", "tlr+loss")
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    times = run(
        kinds,
        blocks=args.blocks,
        block=args.block,
        k=args.k,
        batch=args.batch,
        compare=compare,
        label=args.compare_label,
    )
    print(
        f"torch {torch.__version__}, ntlr {ntlr.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), load average {load_start:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end ({os.cpu_count()} CPUs), "
        f"{time.perf_counter() - started:.0f} s; "
        "MLP 64-256-10 on digits, "
        f"batch {args.batch}, K = {args.k}, {args.blocks} interleaved blocks of {args.block} steps"
    )
    if compare is not None:
        print(f"rows marked [{args.compare_label}]: TLR from the library given by --compare-src")
    print()
    print(
        "| variant | step (µs, median of blocks) | ratio to bare (median of per-block ratios) "
        "| quartiles of the ratios | ratio to bare with a plain zero_grad |"
    )
    print("|---|---|---|---|---|")
    for name, block_times in times.items():
        ratios = [t / b for t, b in zip(block_times, times["bare"], strict=True)]
        plain = [t / b for t, b in zip(block_times, times["bare, plain zero_grad"], strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        print(
            f"| {name} | {statistics.median(block_times) * 1e6:.0f} | {statistics.median(ratios):.3f} "
            f"| {q1:.3f}–{q3:.3f} | {statistics.median(plain):.3f} |"
        )


if __name__ == "__main__":
    main()
