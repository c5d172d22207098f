"""One rate or two: TLR around AdamW on the character transformer with one param group, and with the two
groups nanoGPT and Hugging Face make (weight decay on matrices and embeddings, none on biases and norms).

TLR trains one rate per param group, so the second layout trains two. This measures what that costs or
gains: per α0 and seed, the mean training loss over the last 250 steps, the validation loss (640 crops)
and the trained rates.

    python benchmarks/param_groups.py [--steps 1500] [--alphas 1e-3,1e-6,1] [--seeds 1] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ntlr import TLR


def _crops(source: Tensor, context: int, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    starts = torch.randint(0, len(source) - context - 1, (batch,), generator=generator)
    x = torch.stack([source[i : i + context] for i in starts])
    y = torch.stack([source[i + 1 : i + context + 1] for i in starts])
    return x, y


@dataclass(frozen=True)
class Result:
    train: float  # mean training loss over the last 250 steps
    valid: float
    rates: list[float]  # the trained rate of each param group


def run(layout: str, alpha0: float, seed: int, steps: int, data: Any) -> Result:
    """One run on the corpus ``data`` (the char_transformer workload's, loaded once by main)."""
    from ntlr_bench.models import CharTransformer
    from ntlr_bench.workloads import get_workload

    torch.manual_seed(seed)
    workload = get_workload("char_transformer")
    model = CharTransformer(len(data.vocab), **workload.model_kwargs)
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    if layout == "one":
        groups = [{"params": matrices + vectors, "weight_decay": 0.1}]
    else:
        groups = [{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}]
    opt = TLR(torch.optim.AdamW(groups, lr=alpha0), steps_per_epoch=250)
    context, vocab = workload.model_kwargs["context"], len(data.vocab)
    generator = torch.Generator().manual_seed(seed)
    tail: list[float] = []
    for step in range(steps):
        x, y = _crops(data.train, context, workload.batch_size, generator)
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.observe_loss(loss)
        opt.step()
        if step >= steps - 250:
            tail.append(loss.item())
    model.eval()
    valid = []
    with torch.no_grad():
        held = torch.Generator().manual_seed(123)  # the same crops for every run
        for _ in range(20):
            x, y = _crops(data.valid, context, 32, held)
            valid.append(torch.nn.functional.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1)).item())
    return Result(sum(tail) / len(tail), sum(valid) / len(valid), opt.get_lr())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--alphas", default="1e-3,1e-6,1")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    if args.steps < 250:
        raise SystemExit(f"--steps must be at least 250 (the loss is the last 250 steps'), got {args.steps}")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print("| α0 | seed | one group: train / valid (rate) | two groups: train / valid (rates: decay, none) |")
    print("|---|---|---|---|")
    from ntlr_bench.runner import _load_data
    from ntlr_bench.workloads import get_workload

    workload = get_workload("char_transformer")
    data = _load_data(workload, workload.budget("cpu"), args.data_dir)
    start = time.perf_counter()
    for alpha0 in (float(a) for a in args.alphas.split(",")):
        for seed in range(args.seeds):
            one = run("one", alpha0, seed, args.steps, data)
            two = run("two", alpha0, seed, args.steps, data)
            rates = ", ".join(f"{r:.2g}" for r in two.rates)
            print(
                f"| {alpha0:g} | {seed} | {one.train:.3f} / {one.valid:.3f} ({one.rates[0]:.2g}) | "
                f"{two.train:.3f} / {two.valid:.3f} ({rates}) |",
                flush=True,
            )
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
