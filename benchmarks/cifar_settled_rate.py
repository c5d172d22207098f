"""Where the default rule settles on a batch-normalised conv net, past the gauntlet's 78-step search.

The gauntlet's CIFAR-10 cells (a WRN-10-1 on 5,000 JPEG-decoded training images, batch 128) run 2 epochs at
its cpu budget: the search alone. This runs the same workload for ``--epochs`` epochs (10: 390 steps) with
TLR's default around SGD m0.9 (weight decay 5e-4) and AdamW from α0 = 1e-3, with and without the budget's
decay (``total_steps``), beside SGD m0.9 at 0.1 and 0.3 and AdamW at 3e-3 (the quick tier's best rates),
and prints per run the eval-mode training loss (what the reports score), the last 20 steps' mini-batch
loss, the rate at the end and the test accuracy: batch norm's running statistics make the first far worse
than the second at rates past the useful one (docs/rules.md, "A batch-normalised conv net").

    python benchmarks/cifar_settled_rate.py [--epochs 10] [--workers 2] [--data-dir DIR]

Needs the CIFAR-10 data (``ntlr-bench download cifar10``, or ``--data-dir`` holding it).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import platform
from concurrent.futures import ProcessPoolExecutor
from typing import Any

WORKLOAD = "cifar10_wrn16_4"
SGD = {"momentum": 0.9, "weight_decay": 5e-4}
CELLS: tuple[tuple[str, str, float, dict[str, Any]], ...] = (
    ("SGD m0.9 at 0.1", "sgd", 0.1, SGD),
    ("SGD m0.9 at 0.3", "sgd", 0.3, SGD),
    ("default around SGD m0.9, α0 = 1e-3", "tlr_sgd", 1e-3, {**SGD, "rule": "robust"}),
    ("annealed default around SGD m0.9", "tlr_sgd", 1e-3, {**SGD, "rule": "robust", "anneal": True}),
    ("AdamW at 3e-3", "adamw", 3e-3, {}),
    ("default around AdamW, α0 = 1e-3", "tlr_adamw", 1e-3, {"rule": "robust"}),
)


def _run(cell: tuple[str, str, float, dict[str, Any]], epochs: int, data_dir: str | None) -> list[str]:
    from ntlr_bench import workloads
    from ntlr_bench.records import RunConfig
    from ntlr_bench.runner import run

    # The cpu budget's data and model, for more epochs (a worker process: the registry change stays here).
    spec = workloads.WORKLOADS[WORKLOAD]
    budget = dataclasses.replace(spec.budgets["cpu"], epochs=epochs, eval_every=epochs)
    workloads.WORKLOADS[WORKLOAD] = dataclasses.replace(spec, budgets={**spec.budgets, "cpu": budget})
    label, optimizer, lr, overrides = cell
    record = run(RunConfig(WORKLOAD, optimizer, lr, overrides=overrides), data_dir=data_dir, progress=False)
    losses, final = record["step_loss"], record["final"]
    return [
        label,
        f"{final['train_loss']:.3f}",
        f"{sum(losses[-20:]) / len(losses[-20:]):.3f}",
        f"{record['lr'][-1][0]:.3g}",
        f"{100 * final['test_accuracy']:.1f} %",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        rows = list(pool.map(_run, CELLS, [args.epochs] * len(CELLS), [args.data_dir] * len(CELLS)))
    print(f"{WORKLOAD}, cpu budget's data at {args.epochs} epochs, seed 0; {platform.machine()}")
    print("| run | eval-mode train loss | mini-batch loss, last 20 steps | rate at the end | test accuracy |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
