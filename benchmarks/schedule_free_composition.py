"""Does TLR compose with Schedule-Free? Schedule-Free SGD alone and wrapped in TLR (default rule, loss fed)
on scikit-learn's digits MLP (64-256-10, batch 16, 30 epochs), final training loss in Schedule-Free's eval
mode, over five initial rates.

    python benchmarks/schedule_free_composition.py
"""

from __future__ import annotations

import warnings

import schedulefree
import torch
from torch.nn import functional as F

from ntlr import TLR
from ntlr_bench.data import load


def run(lr: float, wrap: bool, seed: int = 0, epochs: int = 30, batch: int = 16) -> tuple[float, float]:
    data = load("digits")
    x = data.train_inputs.reshape(len(data.train_inputs), -1).float()
    x = (x - x.mean()) / x.std()
    y = data.train_targets
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    inner = schedulefree.SGDScheduleFree(model.parameters(), lr=lr, warmup_steps=0)
    opt = TLR(inner, steps_per_epoch=len(x) // batch) if wrap else inner
    inner.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // batch):
            idx = order[i * batch : (i + 1) * batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            if isinstance(opt, TLR):
                opt.observe_loss(loss)
            opt.step()
    inner.eval()
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
    return final, opt.get_lr()[0] if isinstance(opt, TLR) else lr


def main() -> None:
    torch.set_num_threads(1)
    print("| lr0 | Schedule-Free SGD alone | TLR around it (its final rate) |\n|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TLR's own warning about this very pairing
        for lr in (3.0, 1.0, 0.1, 1e-2, 1e-3):
            alone, (wrapped, rate) = run(lr, False)[0], run(lr, True)
            print(f"| {lr:g} | {alone:.3g} | {wrapped:.3g} ({rate:.2g}) |")


if __name__ == "__main__":
    main()
