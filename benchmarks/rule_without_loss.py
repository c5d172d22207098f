"""How much the default rule owes to the loss: TLR on the digits MLP with and without the loss observed.

The robust rule reads the loss when the loop passes a closure to ``step`` or calls ``observe_loss``;
a loop that calls ``step()`` alone (the Hugging Face Trainer does) leaves it the weights only. For SGD
momentum 0.9 (with and without weight decay 5e-4), Adam and AdamW, batch 16, 64 and 256, α0 = 1 … 1e-6,
ten epochs of scikit-learn's 8×8 digits (an MLP 64-256-10, K = 0.2 of an epoch, as the paper), it prints
per rule and mode the median final training loss over the 72 cells and how many ended at or above
chance (ln 10 = 2.303) or non-finite.

    python benchmarks/rule_without_loss.py [--rules robust paper] [--epochs 10] [--observed both|no|yes]
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

from ntlr import TLR

INNERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "SGD m0.9": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "SGD m0.9 wd": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=5e-4),
    "Adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "AdamW": lambda p, lr: torch.optim.AdamW(p, lr=lr),
}
BATCHES = (16, 64, 256)
RATES = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-6)
CHANCE = math.log(10)


def _final_loss(inner: str, batch: int, lr0: float, rule: str, observe: bool, epochs: int) -> float:
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    steps_per_epoch = len(x) // batch
    opt = TLR(INNERS[inner](model.parameters(), lr0), steps_per_epoch=steps_per_epoch, rule=rule)
    order = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for i in range(steps_per_epoch):
            idx = perm[i * batch : (i + 1) * batch]

            def closure(idx: torch.Tensor = idx) -> torch.Tensor:
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                loss.backward()
                return loss

            if observe:
                opt.step(closure)
            else:
                closure()
                opt.step()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x), y).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", nargs="+", default=["robust"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--observed", choices=["both", "no", "yes"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    print("| rule | loss observed | median final loss (72 cells) | at or above chance |")
    print("|---|---|---|---|")
    for rule in args.rules:
        for observe in {"both": (False, True), "no": (False,), "yes": (True,)}[args.observed]:
            finals = [
                _final_loss(inner, batch, lr0, rule, observe, args.epochs)
                for inner in INNERS
                for batch in BATCHES
                for lr0 in RATES
            ]
            bad = sum(1 for f in finals if not (math.isfinite(f) and f < CHANCE))
            median = statistics.median(f if math.isfinite(f) else math.inf for f in finals)
            print(f"| {rule} | {'yes' if observe else 'no'} | {median:.3g} | {bad} |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
