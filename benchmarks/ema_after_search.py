"""An EMA of the weights around TLR: started at step 0, or once the rule no longer searches. The README's
loop (the loss fed, ``steps_per_epoch``) on scikit-learn's full digits set (pixels / 16), an MLP 64-128-10,
batch 64 shuffled by a seeded DataLoader, SGD momentum 0.9; ``torch.optim.swa_utils.AveragedModel`` with
decay 0.99. While the rule searches, a window can climb up to x100 and be rolled back a window later: the
rollback restores the weights, not an average that saw them. Prints per run the final full-batch training
loss of the model and of both averages, and the window at which ``not any(opt.searching)`` first held.

    python benchmarks/ema_after_search.py [--lrs 0.05 1e-3 1] [--seeds 2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ntlr import TLR
from readme_loop import digits, model_and_loader  # the same loop, as a script beside it


def _ema(model: torch.nn.Module) -> AveragedModel:
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.99))


def run(lr: float, seed: int, epochs: int) -> tuple[float, float, float, int | None]:
    """Final full-batch training loss of the model, of an EMA from step 0 and of an EMA started once the
    rule stopped searching (NaN if it never did), and the meta-step count at that point."""
    x, y = digits()
    model, loader = model_and_loader(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rule lengthens momentum's windows: its note, once per run
        opt = TLR(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9), steps_per_epoch=len(loader))
    from_start, after_search, settled_at = _ema(model), None, None
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.observe_loss(loss)
            opt.step()
            from_start.update_parameters(model)
            if after_search is None and not any(opt.searching):
                after_search, settled_at = _ema(model), len(opt.history)
            if after_search is not None:
                after_search.update_parameters(model)
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
        ema0 = F.cross_entropy(from_start(x), y).item()
        ema1 = F.cross_entropy(after_search(x), y).item() if after_search is not None else math.nan
    return final, ema0, ema1, settled_at


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.05, 1e-3, 1.0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| α0 | seed | model | EMA from step 0 | EMA once settled | settled after meta-steps |")
    print("|---|---|---|---|---|---|")
    for lr in args.lrs:
        for seed in range(args.seeds):
            final, ema0, ema1, at = run(lr, seed, args.epochs)
            print(f"| {lr:g} | {seed} | {final:.3f} | {ema0:.3f} | {ema1:.3f} | {at} |")


if __name__ == "__main__":
    main()
