"""TLR with and without its loss guard (``TLR(..., loss_guard=True)``), side by side.

On scikit-learn's digits (MLP 64-256-10, the benchmark's SGD: momentum 0.8, weight decay 5e-4) the
paper's rule can keep raising the rate while the training loss climbs; the guard vetoes increases after a
window whose mean loss rose, and shrinks the rate after a clear rise. For every batch size, p
(K = round(p * steps per epoch)) and initial lr, the table shows plain SGD at that fixed lr, TLR, and TLR
with the guard: the final full-training-set loss, the largest per-epoch training loss (epoch 1 included),
the final effective lr, ``DIV`` when the loss became non-finite or ended above the initial loss, and
``STUCK`` when it ended above half the initial loss. A short MNIST check (MLP 784-1000-10, batch 128, the
paper's setting) shows whether the guard costs anything where the rule already works. Every run uses the
same seed, so the three columns of a row see the same initial weights and batch order. The guarded runs
feed the loss through ``step(closure)``; the unguarded ones call ``step()`` as the benchmark runner does.

    OMP_NUM_THREADS=1 NTLR_DATA_DIR=... python benchmarks/loss_guard.py [--epochs 20] [--mnist-epochs 3]
        [--no-mnist]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ntlr import TLR
from ntlr_bench.batching import index_batches, normalize
from ntlr_bench.data import load
from ntlr_bench.models import mlp
from ntlr_bench.optimizers.standard import SGD_DEFAULTS


@dataclass
class Result:
    final_loss: float
    max_loss: float
    initial_loss: float
    final_lr: float
    guarded: int  # meta-steps whose factor the guard changed
    meta_steps: int

    @property
    def diverged(self) -> bool:
        return not math.isfinite(self.final_loss) or self.final_loss > self.initial_loss

    @property
    def stuck(self) -> bool:
        """Finite but no real progress: at least half the initial loss (2.3 is chance level here)."""
        return not self.diverged and self.final_loss >= 0.5 * self.initial_loss

    def cell(self) -> str:
        flag = " **DIV**" if self.diverged else " **STUCK**" if self.stuck else ""
        return f"{self.final_loss:.3g} / {self.max_loss:.3g} / {self.final_lr:.3g}{flag}"


class Data:
    def __init__(self, name: str, data_dir: str | None) -> None:
        data = load(name, data_dir)
        self.x = data.train_inputs
        self.y = data.train_targets
        self.mean = torch.tensor(data.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std).view(1, -1, 1, 1)
        self.in_features = self.x[0].numel()
        self.classes = data.num_classes

    @torch.no_grad()
    def train_loss(self, model: nn.Module) -> float:
        total = 0.0
        for start in range(0, len(self.y), 2048):
            x = normalize(self.x[start : start + 2048], self.mean, self.std)
            total += float(F.cross_entropy(model(x), self.y[start : start + 2048], reduction="sum"))
        return total / len(self.y)


def train(
    data: Data,
    *,
    hidden: int,
    lr: float,
    batch: int,
    epochs: int,
    p: float | None,
    guard: bool,
    z: float = 1.0,
    seed: int = 0,
) -> Result:
    torch.manual_seed(seed)
    model = mlp(data.in_features, data.classes, hidden=hidden)
    inner = torch.optim.SGD(model.parameters(), lr=lr, **SGD_DEFAULTS)
    steps_per_epoch = math.ceil(len(data.y) / batch)
    opt = (
        inner
        if p is None
        else TLR(inner, steps_per_epoch=steps_per_epoch, p=p, rule="paper", loss_guard=guard, loss_guard_z=z)
    )
    generator = torch.Generator().manual_seed(seed)
    initial = data.train_loss(model)
    losses = []
    for _ in range(epochs):
        for idx in index_batches(len(data.y), batch, generator=generator, shuffle=True):
            x, y = normalize(data.x[idx], data.mean, data.std), data.y[idx]

            def closure(x: Tensor = x, y: Tensor = y) -> Tensor:
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss

            if guard:
                opt.step(closure)
            else:
                closure()
                opt.step()
        losses.append(data.train_loss(model))
        if not math.isfinite(losses[-1]):
            break
    final_lr = opt.get_lr()[0] if p is not None else lr
    history = getattr(opt, "history", [])
    return Result(
        final_loss=losses[-1],
        max_loss=max(losses, key=lambda v: v if math.isfinite(v) else math.inf),
        initial_loss=initial,
        final_lr=final_lr,
        guarded=sum(r.status == "loss_guard" for r in history),
        meta_steps=len(history),
    )


COLUMNS = "final / max / lr"


def table(
    data: Data,
    *,
    hidden: int,
    batches: list[int],
    ps: list[float],
    lrs: list[float],
    epochs: int,
    z: float = 1.0,
    seed: int = 0,
) -> None:
    print(
        f"| batch | K | lr0 | SGD ({COLUMNS}) | TLR ({COLUMNS}) | TLR + guard ({COLUMNS}) | guarded |\n"
        "|---|---|---|---|---|---|---|"
    )
    for batch in batches:
        steps_per_epoch = math.ceil(len(data.y) / batch)
        for p in ps:
            k = max(1, round(p * steps_per_epoch))
            for lr in lrs:
                common = {"hidden": hidden, "lr": lr, "batch": batch, "epochs": epochs, "seed": seed}
                sgd = train(data, p=None, guard=False, **common)
                tlr = train(data, p=p, guard=False, **common)
                guarded = train(data, p=p, guard=True, z=z, **common)
                print(
                    f"| {batch} | {k} | {lr:g} | {sgd.cell()} | {tlr.cell()} | {guarded.cell()} | "
                    f"{guarded.guarded}/{guarded.meta_steps} |",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="digits epochs (the cpu budget's 20)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 16])
    parser.add_argument("--ps", type=float, nargs="+", default=[0.2, 1 / 3])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1.0, 0.1, 0.01, 0.001])
    parser.add_argument("--mnist-epochs", type=int, default=3, help="MNIST epochs (the cpu budget's 3)")
    parser.add_argument("--mnist-lrs", type=float, nargs="+", default=[0.1, 1e-3])
    parser.add_argument("--no-mnist", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument(
        "--z", type=float, default=1.0, help="loss_guard_z: 0 shrinks after every rise, 1e9 never does"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); per optimizer: final train loss, "
        "max per-epoch train loss, final effective lr; DIV = non-finite or above the initial loss, STUCK = "
        "above half of it; "
        "guarded = meta-steps the guard changed / all meta-steps\n"
    )
    print(
        f"digits, MLP 64-256-10, {args.epochs} epochs, SGD momentum 0.8, weight decay 5e-4; "
        f"guard: loss_guard_z={args.z:g}; seed {args.seed}\n"
    )
    digits = Data("digits", None)
    table(
        digits,
        hidden=256,
        batches=args.batches,
        ps=args.ps,
        lrs=args.lrs,
        epochs=args.epochs,
        z=args.z,
        seed=args.seed,
    )
    if not args.no_mnist:
        data_dir = os.environ.get("NTLR_DATA_DIR")
        print(f"\nMNIST, MLP 784-1000-10, {args.mnist_epochs} epoch(s), batch 128, p = 0.2\n")
        table(
            Data("mnist", data_dir),
            hidden=1000,
            batches=[128],
            ps=[0.2],
            lrs=args.mnist_lrs,
            epochs=args.mnist_epochs,
            z=args.z,
            seed=args.seed,
        )
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
