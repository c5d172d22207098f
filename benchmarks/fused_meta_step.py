"""The meta-step's tensor work on each of its paths (loop, foreach, ``fused``), in bare optimizer steps,
measured side by side in one run.

    python benchmarks/fused_meta_step.py [--device cpu] [--threads 1] [--pairs 15] [--widths 1024,2048,...]

On an MLP's parameters (default: 1024-2048-2048-2048-1024, 12.6M float32, as benchmarks/overhead.py), each
round times, in a rotating order, one plain SGD step, one SGD-momentum step and one meta-step on each path
(the inner products brought to the host, then the window advanced: what a kept window costs, with ``b``
known from the previous window as in TLR's steady state). Prints the median time of each and the median
of the per-round ratios to the SGD-momentum step; the fused path's first call (its compile) is left out.
The pass counts the paths make over the weights and buffers (reads + writes of a parameter-sized tensor):
loop 12 (``d = s - w``: 3, ``<p, d>``: 2, ``<d, d>``: 1, advance ``p <- s - w``: 3, ``s <- w``: 2, plus
``b``'s when summed), foreach 10 (``d`` kept and copied), fused 7 (sums: 3 reads; advance: 2 reads, 2
writes); an SGD-momentum step makes 5, a plain SGD step 3.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable

import torch

from ntlr import functional


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--widths", default="1024,2048,2048,2048,1024")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    widths = [int(w) for w in args.widths.split(",")]
    torch.manual_seed(0)
    params: list[torch.Tensor] = []
    for i, o in itertools.pairwise(widths):
        params += [torch.randn(o, i, device=device) * 0.02, torch.zeros(o, device=device)]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    numel = sum(p.numel() for p in params)
    plain = torch.optim.SGD(params, lr=1e-6)
    momentum = torch.optim.SGD([p.detach().clone().requires_grad_() for p in params], lr=1e-6, momentum=0.9)
    for q, p in zip(momentum.param_groups[0]["params"], params):
        q.grad = p.grad.clone()
    buffers = {
        path: ([p.clone() for p in params], [torch.zeros_like(p) for p in params])
        for path in ("loop", "foreach", "fused")
    }

    def meta(path: str) -> Callable[[], None]:
        snaps, prev = buffers[path]
        flags = {"foreach": path == "foreach", "fused": path == "fused"}

        @torch.no_grad()
        def run() -> None:
            products, directions = functional.window_products_and_directions(
                params, snaps, prev, 1e-4, old_norm=False, old_scale=1e-4, **flags
            )
            products.tolist()
            functional.advance_window_(
                params, snaps, prev, 1e-4, directions=directions, keep_scale=True, **flags
            )

        return run

    fns: dict[str, Callable[[], object]] = {
        "plain SGD step": plain.step,
        "SGD m0.9 step": momentum.step,
        **{f"meta-step {path}": meta(path) for path in ("loop", "foreach", "fused")},
    }
    start = time.perf_counter()
    for fn in fns.values():  # warm up: the fused kernels compile here
        fn()
    compile_s = time.perf_counter() - start
    times: dict[str, list[float]] = {name: [] for name in fns}
    ratios: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(args.pairs):
        order = names[r % len(names) :] + names[: r % len(names)]
        this = {name: _timed(fns[name], device) for name in order}
        for name in names:
            times[name].append(this[name])
            ratios[name].append(this[name] / this["SGD m0.9 step"])
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, {where}, {args.threads} thread(s); {numel / 1e6:.1f}M float32 params "
        f"(widths {args.widths}); {args.pairs} rounds; load average at the end {load}; "
        f"warm-up incl. the fused compile {compile_s:.1f} s"
    )
    print("| what | median ms | in SGD-m steps (median of per-round ratios) |")
    print("|---|---|---|")
    for name in names:
        print(
            f"| {name} | {statistics.median(times[name]) * 1e3:.3f} | {statistics.median(ratios[name]):.2f} |"
        )


if __name__ == "__main__":
    main()
