"""Epoch time of mnist_mlp: the bench's in-memory pipeline vs a DataLoader over a TensorDataset.

Prints, measured side by side in one run (interleaved repeats, medians), the time of one epoch of
training the workload's MLP with
  model:       forward+backward+step on batches prepared in advance (no data work at all),
  bench:       ntlr_bench's pipeline (uint8 tensors in memory, index batches, normalise per batch),
  dataloader:  torch.utils.data.DataLoader(TensorDataset(float32 normalised), shuffle=True),
and, with no model at all, the batches alone of each pipeline ("data only"). The data cost is reported
both ways as a fraction of the model's time: (pipeline epoch - model epoch) / model epoch, and (data-only
epoch) / model epoch. The first is a difference of two noisy times of several seconds; on a loaded machine
its noise can exceed a few-percent cost, which the second measures directly.

    python benchmarks/data_pipeline.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from ntlr_bench.batching import index_batches, normalize
from ntlr_bench.data import load
from ntlr_bench.models import mlp


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load("mnist")
    x_u8, y = data.train_inputs, data.train_targets
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x_float = normalize(x_u8, mean, std)
    bs = args.batch_size
    model = mlp(784, 10, hidden=1000)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def train_step(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), targets).backward()
        opt.step()

    prepared = [
        (x_float[i], y[i])
        for i in index_batches(len(y), bs, generator=torch.Generator().manual_seed(0), shuffle=True)
    ]

    def epoch_model() -> None:
        for inputs, targets in prepared:
            train_step(inputs, targets)

    gen = torch.Generator().manual_seed(0)

    def epoch_bench() -> None:
        for idx in index_batches(len(y), bs, generator=gen, shuffle=True):
            train_step(normalize(x_u8[idx], mean, std), y[idx])

    loader = DataLoader(TensorDataset(x_float, y), batch_size=bs, shuffle=True)

    def epoch_dataloader() -> None:
        for inputs, targets in loader:
            train_step(inputs, targets)

    def data_bench() -> None:
        for idx in index_batches(len(y), bs, generator=gen, shuffle=True):
            _ = normalize(x_u8[idx], mean, std), y[idx]

    def data_dataloader() -> None:
        for _ in loader:
            pass

    variants = {
        "model": epoch_model,
        "bench": epoch_bench,
        "dataloader": epoch_dataloader,
        "bench data only": data_bench,
        "dataloader data only": data_dataloader,
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    epoch_model()  # warm-up
    for _ in range(args.repeats):
        for name, fn in variants.items():  # interleaved, so drifts in machine load hit all alike
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"mnist_mlp, {len(y)} examples, batch {bs}, {args.threads} thread(s), "
        f"torch {torch.__version__}, median of {args.repeats}"
    )
    print(f"{'variant':<22}{'median s':>10}{'min s':>8}{'data cost vs model':>22}")
    for name in variants:
        # Data-only rows are the data cost itself; the others carry it on top of the model's time.
        extra = med[name] if name.endswith("data only") else med[name] - med["model"]
        print(f"{name:<22}{med[name]:>10.2f}{min(times[name]):>8.2f}{extra / med['model']:>21.1%}")
    print(f"dataloader / bench epoch time: {med['dataloader'] / med['bench']:.2f}x")


if __name__ == "__main__":
    main()
