"""Short runs without a budget: does TLR's default end above where it started? A new user's loop (README's
quickstart, the loss fed) on scikit-learn's full digits set (1797 examples, pixels / 16), an MLP 64-256-10,
batch 64 shuffled by a seeded DataLoader, around SGD at lr 0.05 with and without momentum, K = 5 and 10,
3 and 10 epochs, 8 seeds; with and without ``total_steps``. Prints each cell's final full-batch training
loss per seed, its median and how many runs ended above the initial loss.

    python benchmarks/short_runs.py [--seeds 8] [--epochs 3 10] [--budget both|off|on]
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch
from torch.nn import functional as F

from ntlr import TLR
from readme_loop import digits  # the same data set, read once, as a script beside it


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))


def run(seed: int, k: int, epochs: int, momentum: float, budget: bool, batch: int = 64) -> float:
    """The final full-batch training loss of one run."""
    x, y = digits()
    model = _model(seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    total = epochs * len(loader) if budget else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rule lengthens momentum's windows: its note, once per run
        opt = TLR(
            torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum), update_every=k, total_steps=total
        )
        for _ in range(epochs):
            for xb, yb in loader:
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.observe_loss(loss)
                opt.step()
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--budget", choices=("both", "off", "on"), default="both")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = digits()
    with torch.no_grad():
        initial = F.cross_entropy(_model(0)(x), y).item()
    print(f"initial loss (seed 0) {initial:.3f}\n")
    print("| epochs | momentum | K | total_steps | final loss per seed | median | above the initial |")
    print("|---|---|---|---|---|---|---|")
    budgets = {"both": (False, True), "off": (False,), "on": (True,)}[args.budget]
    for epochs in args.epochs:
        for momentum in (0.0, 0.9):
            for k in (5, 10):
                for budget in budgets:
                    finals = [run(seed, k, epochs, momentum, budget) for seed in range(args.seeds)]
                    above = sum(final > initial for final in finals)
                    print(
                        f"| {epochs} | {momentum} | {k} | {'yes' if budget else 'no'} | "
                        f"{' '.join(f'{f:.3g}' for f in finals)} | {statistics.median(finals):.3g} | "
                        f"{above} of {len(finals)} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
