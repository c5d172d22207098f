"""The default rule of two copies of the library, paired cell by cell on the gauntlet's quick tier.

A rule change is judged on whole runs (docs/rules.md), but the quick tier is where it is tried first, and
one seed of it is noisy: the geometric mean of 180 paired final losses moved from 1.054 (seed 0) to 0.903
(seed 1) for one and the same change. This runs the gauntlet's default-rule cells (``rule="robust"``,
no budget; ``--anneal``: the cells with ``TLR(total_steps=...)``) at ``--seeds`` seeds with the library
at ``--before`` and at ``--after`` (each a ``src`` folder holding ``ntlr`` and ``ntlr_bench``, e.g. a
commit's, exported with ``git archive COMMIT src | tar x -C DIR``; ``--after`` defaults to this checkout),
and prints the paired comparison: the geometric mean of after / before final training losses, the counts
lower / higher / within 2 %, the runs that stalled or diverged (the reports' own test), per seed and per
(workload, batch, inner optimizer), and the cells that moved most. Records go to ``--out`` (resumable).

    python benchmarks/rule_pairs.py --before DIR [--after DIR] [--seeds 2] [--workers 2] [--anneal]
        [--workloads digits_mlp,...] [--data-dir DIR] [--out runs/rule_pairs]
"""

from __future__ import annotations

import argparse
import collections
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _use_source(src: str) -> None:
    """Worker initializer: import ``ntlr`` and ``ntlr_bench`` from ``src`` (before anything imports them)."""
    sys.path.insert(0, src)


def _run(config: dict[str, Any], dest: str, data_dir: str | None) -> str:
    from ntlr_bench.sweep import _run_one

    _run_one(config, dest, data_dir, "cpu", 1, False)
    return dest


def _cells(seeds: int, anneal: bool, workloads: list[str]) -> list[Any]:
    from ntlr_bench.experiments import get_experiment

    return [
        cell
        for cell in get_experiment("gauntlet").expand("cpu", seeds)
        if cell.overrides.get("rule") == "robust"
        and bool(cell.overrides.get("anneal")) == anneal
        and (not workloads or cell.workload in workloads)
    ]


def _run_side(src: str, label: str, cells: list[Any], out: Path, workers: int, data_dir: str | None) -> None:
    folder = out / label
    folder.mkdir(parents=True, exist_ok=True)
    todo = [cell for cell in cells if not (folder / f"{cell.run_id}.json.gz").exists()]
    print(f"{label}: {len(cells)} cells, {len(todo)} to run", flush=True)
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_use_source, initargs=(src,)) as pool:
        dests = [str(folder / f"{cell.run_id}.json.gz") for cell in todo]
        futures = [pool.submit(_run, cell.to_dict(), dest, data_dir) for cell, dest in zip(todo, dests)]
        for future in futures:
            future.result()


def _finals(folder: Path) -> dict[str, dict[str, Any]]:
    """Per record file: the final training loss, whether the run ended well (the reports' own test,
    ``ntlr_bench.outcome``), its seed and its cell."""
    from ntlr_bench.outcome import Outcome, final_train_loss, outcome
    from ntlr_bench.records import read_record

    runs = {}
    for path in folder.glob("*.json.gz"):
        record = read_record(path)
        config = record["config"]
        runs[path.name] = {
            "final": final_train_loss(record),
            "ok": outcome(record) is Outcome.OK,
            "seed": config["seed"],
            "cell": (config["workload"], config.get("batch_size"), config["optimizer"]),
        }
    return runs


def _geo(ratios: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(r) for r in ratios)) if ratios else math.nan


def _summary(ratios: list[float]) -> str:
    lower = sum(r < 0.98 for r in ratios)
    higher = sum(r > 1.02 for r in ratios)
    within = len(ratios) - lower - higher
    return f"geo {_geo(ratios):.3f}, lower {lower} / higher {higher} / within 2 % {within}"


def compare(out: Path) -> None:
    before, after = _finals(out / "before"), _finals(out / "after")
    pairs = sorted(set(before) & set(after))
    finite = [k for k in pairs if before[k]["final"] > 0 and math.isfinite(after[k]["final"])]
    ratio = {k: after[k]["final"] / before[k]["final"] for k in finite}
    print(f"\n{len(pairs)} paired runs ({len(pairs) - len(finite)} with a non-finite or zero loss left out)")
    print(f"all: {_summary(list(ratio.values()))}")

    def stalled(runs: dict[str, dict[str, Any]]) -> int:
        return sum(not runs[k]["ok"] for k in pairs)

    print(f"stalled or diverged: before {stalled(before)}, after {stalled(after)}")
    for seed in sorted({before[k]["seed"] for k in finite}):
        print(f"seed {seed}: {_summary([ratio[k] for k in finite if before[k]['seed'] == seed])}")
    by_cell: dict[tuple[Any, ...], list[str]] = collections.defaultdict(list)
    for k in finite:
        by_cell[before[k]["cell"]].append(k)
    print("\n| workload | batch | optimizer | runs | geo after/before | median before → after | worst |")
    print("|---|---|---|---|---|---|---|")
    for (workload, batch, optimizer), keys in sorted(by_cell.items(), key=lambda item: str(item[0])):
        b = [before[k]["final"] for k in keys]
        a = [after[k]["final"] for k in keys]
        print(
            f"| {workload} | {batch} | {optimizer} | {len(keys)} | {_geo([ratio[k] for k in keys]):.3f} | "
            f"{statistics.median(b):.4g} → {statistics.median(a):.4g} | {max(b):.4g} → {max(a):.4g} |"
        )
    moved = sorted(finite, key=lambda k: ratio[k])
    for name, keys in (("most lowered", moved[:5]), ("most raised", moved[::-1][:5])):
        print(f"\n{name}:")
        for k in keys:
            print(f"  {k.removesuffix('.json.gz')}: {before[k]['final']:.4g} → {after[k]['final']:.4g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a src folder holding the library to compare against")
    parser.add_argument("--after", default=str(HERE.parent / "src"), help="default: this checkout's src")
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0 … N-1 of every cell (default: 2)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--anneal", action="store_true", help="the cells with total_steps instead")
    parser.add_argument("--workloads", default="", help="comma-separated: only these (default: all)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/rule_pairs", help="records folder (resumable)")
    args = parser.parse_args()
    for name in ("before", "after"):
        if not (Path(getattr(args, name)) / "ntlr" / "__init__.py").is_file():
            parser.error(f"--{name}: {getattr(args, name)!r} holds no ntlr package (expected a src folder)")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    out = Path(args.out) / ("anneal" if args.anneal else "plain")
    workloads = [w for w in args.workloads.split(",") if w]
    cells = _cells(args.seeds, args.anneal, workloads)
    if not cells:
        parser.error(f"--workloads: no default-rule cell of the quick tier runs {args.workloads!r}")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.workers} workers, "
        f"load average {os.getloadavg()[0]:.2f} at the start; before: {args.before}; after: {args.after}",
        flush=True,
    )
    _run_side(args.before, "before", cells, out, args.workers, args.data_dir)
    _run_side(args.after, "after", cells, out, args.workers, args.data_dir)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    compare(out)


if __name__ == "__main__":
    main()
