"""Where the default rule settles on a batch-normalised conv net, past the gauntlet's 78-step search.

The gauntlet's CIFAR-10 cells (a WRN-10-1 on 5,000 JPEG-decoded training images, batch 128) run 2 epochs at
its cpu budget: the search alone. This runs the same workload for ``--epochs`` epochs (10: 390 steps) with
TLR's default around SGD m0.9 (weight decay 5e-4), with and without the budget's decay (``total_steps``),
and around AdamW, from each initial rate of ``--alphas`` (1e-3 unless given), beside SGD m0.9 at 0.1 and
0.3 and AdamW at 3e-3 (the quick tier's best rates), and prints per run the eval-mode training loss (what
the reports score), the last 20 steps' mini-batch loss, the rate at the end and the test accuracy: batch
norm's running statistics make the first far worse than the second at rates past the useful one
(docs/rules.md, "A batch-normalised conv net").

    python benchmarks/cifar_settled_rate.py [--epochs 10] [--workers 2] [--alphas 1e-3] [--data-dir DIR]

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
Cell = tuple[str, str, float, dict[str, Any]]
CONSTANTS: tuple[Cell, ...] = (
    ("SGD m0.9 at 0.1", "sgd", 0.1, SGD),
    ("SGD m0.9 at 0.3", "sgd", 0.3, SGD),
    ("AdamW at 3e-3", "adamw", 3e-3, {}),
)


def default_cells(alpha: float) -> tuple[Cell, ...]:
    """TLR's default from the initial rate ``alpha``: around SGD m0.9 (without and with the budget's decay)
    and around AdamW."""
    return (
        (f"default around SGD m0.9, α0 = {alpha:g}", "tlr_sgd", alpha, {**SGD, "rule": "robust"}),
        (
            f"annealed default around SGD m0.9, α0 = {alpha:g}",
            "tlr_sgd",
            alpha,
            {**SGD, "rule": "robust", "anneal": True},
        ),
        (f"default around AdamW, α0 = {alpha:g}", "tlr_adamw", alpha, {"rule": "robust"}),
    )


def _run(cell: Cell, epochs: int, data_dir: str | None) -> list[str]:
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
    parser.add_argument(
        "--alphas",
        default="1e-3",
        help="comma-separated initial rates of TLR's default cells (default: 1e-3)",
    )
    args = parser.parse_args()
    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        parser.error(f"--alphas: comma-separated positive numbers expected, got {args.alphas!r}")
    if not alphas or not all(a > 0.0 for a in alphas):
        parser.error(f"--alphas: comma-separated positive numbers expected, got {args.alphas!r}")
    cells = [*CONSTANTS, *(cell for alpha in alphas for cell in default_cells(alpha))]
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        rows = list(pool.map(_run, cells, [args.epochs] * len(cells), [args.data_dir] * len(cells)))
    print(f"{WORKLOAD}, cpu budget's data at {args.epochs} epochs, seed 0; {platform.machine()}")
    print("| run | eval-mode train loss | mini-batch loss, last 20 steps | rate at the end | test accuracy |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
