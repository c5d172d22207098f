"""Protocols no tier of the gauntlet runs, against the default rule (docs/rules.md, 2026-12-06 sections).

Two tables, each run beside the rule with a safeguard turned off where one exists:

* ``offsets``: scikit-learn's digits, an MLP 64-128-10, SGD momentum 0.9, batch 32, ten epochs,
  ``TLR(steps_per_epoch=56)`` with the loss fed, and a constant added to the cross-entropy (a likelihood's
  normaliser, an irreducible error): the final cross-entropy on the whole set (without the constant) from
  α0 = 1e-1, 1e-3, 1e-5; beside it ``RobustRule(loss_span=inf)``, the rule before item 16.
* ``tiny``: a full-batch least squares (256 × 20 standard normal inputs, a loss of 24 at the start) from
  rates whose steps do not change the loss in its last float32 bit or do not register in the weights:
  SGD, SGD momentum 0.9, Adam and L-BFGS from 1e-5 … 1e-11 (300 steps, 60 for L-BFGS), K = 5, through
  ``step(closure)``; the final loss (the optimum is 0.0100) and the trained rate.
* ``below``: the digits MLP of ``offsets`` (no offset) from α0 = 1e-1 … 1e-9, below the gauntlet's
  lowest α0 (1e-6), at five seeds: the final cross-entropy and trained rate per run, and the median,
  geometric mean and worst over the 25 runs (a stall or a dead network ends near chance, 2.3).
* ``survey``: the same MLP around six inner optimizers (SGD, SGD m0.9, Adam, AdamW, RMSprop, Adagrad) from
  α0 = 1e-7, 1e-9, 1e-11 at three seeds: the final cross-entropy (trained rate) per run.

    python benchmarks/protocol_probes.py [--tables offsets tiny below survey] [--epochs 10]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from sklearn.datasets import load_digits

from ntlr import TLR, RobustRule

OFFSETS = (0.0, 3.0, 10.0, 100.0)
DIGIT_RATES = (1e-1, 1e-3, 1e-5)
BELOW_RATES = (1e-1, 1e-3, 1e-5, 1e-7, 1e-9)
BELOW_SEEDS = 5
SURVEY_RATES = (1e-7, 1e-9, 1e-11)
SURVEY_SEEDS = 3
SURVEY_INNERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "SGD": lambda p, lr: torch.optim.SGD(p, lr=lr),
    "SGD m0.9": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "Adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "AdamW": lambda p, lr: torch.optim.AdamW(p, lr=lr),
    "RMSprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr),
    "Adagrad": lambda p, lr: torch.optim.Adagrad(p, lr=lr),
}
TINY_RATES = (1e-5, 1e-7, 1e-9, 1e-10, 1e-11)
TINY_INNERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "SGD": lambda p, lr: torch.optim.SGD(p, lr=lr),
    "SGD m0.9": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "Adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "L-BFGS": lambda p, lr: torch.optim.LBFGS(p, lr=lr),
}


def digits_mlp_run(
    lr0: float,
    rule: RobustRule,
    *,
    epochs: int = 10,
    seed: int = 0,
    inner: str = "SGD m0.9",
    offset: float = 0.0,
) -> tuple[float, TLR]:
    """The digits MLP (64-128-10), batch 32, trained with ``offset`` added to its cross-entropy and the loss
    fed, around SGD m0.9 unless ``inner`` names another of ``SURVEY_INNERS``: the final cross-entropy on the
    whole set (without the offset) and the optimizer. tests/test_rules.py runs its cases through it too."""
    x_np, y_np = load_digits(return_X_y=True)
    x, y = torch.tensor(x_np, dtype=torch.float32) / 16.0, torch.tensor(y_np)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = TLR(SURVEY_INNERS[inner](model.parameters(), lr0), steps_per_epoch=56, rule=rule)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x) - 31, 32):
            batch = perm[i : i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch]) + offset
            loss.backward()
            opt.observe_loss(loss)
            opt.step()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x), y).item(), opt


def _final_and_rate(lr0: float, epochs: int, seed: int, inner: str = "SGD m0.9") -> tuple[float, float]:
    final, opt = digits_mlp_run(lr0, RobustRule(), epochs=epochs, seed=seed, inner=inner)
    return final, opt.get_lr()[0]


def least_squares_from(inner: str, lr0: float) -> tuple[float, float]:
    """The final loss and trained rate of a full-batch least squares from ``lr0``."""
    torch.manual_seed(0)
    x = torch.randn(256, 20)
    y = x @ torch.randn(20, 1) + 0.1 * torch.randn(256, 1)
    model = torch.nn.Linear(20, 1)
    opt = TLR(TINY_INNERS[inner](model.parameters(), lr0), update_every=5)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(60 if inner == "L-BFGS" else 300):
        opt.step(closure)
    return closure().item(), opt.get_lr()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tables",
        nargs="+",
        choices=("offsets", "tiny", "below", "survey"),
        default=["offsets", "tiny", "below", "survey"],
    )
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the window-length note, once per run
    start = time.perf_counter()
    print(f"torch {torch.__version__}, one thread")
    if "offsets" in args.tables:
        rates = " / ".join(f"{lr:g}" for lr in DIGIT_RATES)
        print(f"\n| offset added to the loss | default, α0 = {rates} | loss_span=inf (before item 16) |")
        print("|---|---|---|")
        for offset in OFFSETS:
            cells = []
            for rule in (RobustRule(), RobustRule(loss_span=math.inf)):
                runs = [digits_mlp_run(lr, rule, epochs=args.epochs, offset=offset) for lr in DIGIT_RATES]
                finals = [final for final, _ in runs]
                cells.append(" / ".join(f"{final:.3g}" for final in finals))
            print(f"| {offset:g} | {cells[0]} | {cells[1]} |")
    if "tiny" in args.tables:
        print("\n| inner | " + " | ".join(f"from {lr:g}" for lr in TINY_RATES) + " |")
        print("|---|" + "---|" * len(TINY_RATES))
        for inner in TINY_INNERS:
            cells = [least_squares_from(inner, lr) for lr in TINY_RATES]
            row = " | ".join(f"{loss:.3g} (rate {rate:.2g})" for loss, rate in cells)
            print(f"| {inner} | {row} |")
    if "below" in args.tables:
        print("\n| α0 | " + " | ".join(f"seed {seed}" for seed in range(BELOW_SEEDS)) + " |")
        print("|---|" + "---|" * BELOW_SEEDS)
        finals = []
        for lr in BELOW_RATES:
            seeds = range(BELOW_SEEDS)
            cells = [_final_and_rate(lr, args.epochs, seed) for seed in seeds]
            finals += [final for final, _ in cells]
            row = " | ".join(f"{final:.3g} (rate {rate:.2g})" for final, rate in cells)
            print(f"| {lr:g} | {row} |")
        geo = math.exp(statistics.fmean(math.log(final) for final in finals))
        print(f"\nmedian {statistics.median(finals):.3g}, geometric mean {geo:.3g}, worst {max(finals):.3g}")
    if "survey" in args.tables:
        columns = [f"{lr:g} s{seed}" for lr in SURVEY_RATES for seed in range(SURVEY_SEEDS)]
        print("\n| inner | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
        for inner in SURVEY_INNERS:
            cells = [
                _final_and_rate(lr, args.epochs, seed, inner)
                for lr in SURVEY_RATES
                for seed in range(SURVEY_SEEDS)
            ]
            print(f"| {inner} | " + " | ".join(f"{final:.2g} ({rate:.1g})" for final, rate in cells) + " |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
