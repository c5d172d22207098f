"""The README's quickstart loop on scikit-learn's full digits set (pixels / 16): an MLP 64-128-10, batch 64
shuffled by a seeded DataLoader, SGD momentum 0.9, the loss fed, ``steps_per_epoch`` windows, 10 epochs,
from six initial rates and four seeds. Prints the final full-batch training loss of every run, with TLR
(``--budget``: also ``total_steps``) or with the constant rate alone (``--constant``), the median and how
many runs ended above 0.1.

    python benchmarks/readme_loop.py [--constant] [--budget] [--epochs 10] [--seeds 4]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import warnings

import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

from ntlr import TLR

RATES = (1.0, 0.1, 0.05, 0.01, 1e-3, 1e-4)


@functools.cache  # read once for all the runs
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)


def model_and_loader(seed: int) -> tuple[torch.nn.Module, torch.utils.data.DataLoader]:
    """The loop's MLP 64-128-10 (initialised from ``seed``) and its shuffled batches of 64 (benchmarks/
    ema_after_search.py runs the same)."""
    x, y = digits()
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return model, loader


def run(lr: float, seed: int, epochs: int, *, tlr: bool = True, budget: bool = False) -> float:
    """The final full-batch training loss of one run."""
    x, y = digits()
    model, loader = model_and_loader(seed)
    sgd = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    opt: torch.optim.Optimizer = sgd
    if tlr:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the rule lengthens momentum's windows: its note, once per run
            opt = TLR(sgd, steps_per_epoch=len(loader), total_steps=epochs * len(loader) if budget else None)
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            if isinstance(opt, TLR):
                opt.observe_loss(loss)
            opt.step()
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--constant", action="store_true", help="SGD at the constant rate, no TLR")
    parser.add_argument("--budget", action="store_true", help="TLR with total_steps")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    finals = []
    print("| α0 | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " |")
    print("|---" * (args.seeds + 1) + "|")
    for lr in RATES:
        row = [run(lr, s, args.epochs, tlr=not args.constant, budget=args.budget) for s in range(args.seeds)]
        finals += row
        print(f"| {lr:g} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    above = sum(v > 0.1 for v in finals)
    print(f"median {statistics.median(finals):.4f}; above 0.1: {above} of {len(finals)}")


if __name__ == "__main__":
    main()
