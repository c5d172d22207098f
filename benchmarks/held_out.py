"""The default rule on workloads and inner optimizers it was never tuned on, against a tuned constant rate.

The gauntlet's cells chose the rule's constants; this is the check they cannot give: five small tasks of
kinds the gauntlet lacks (a regression on 442 examples, a GRU, an autoencoder, a convolutional net without
normalisation, dropout with label smoothing) around inner optimizers it never runs (RMSprop, Adagrad,
NAdam, RAdam, Adamax, Nesterov SGD), written as a user would: ``TLR(opt, steps_per_epoch=N)`` with
``observe_loss``. Each (task, inner optimizer) pair runs TLR from α0 = 1, 1e-2, 1e-4, 1e-6 and the inner
optimizer alone at ten constant rates 1e-4 … 3; the table gives the best constant, TLR's median and worst
cell over α0 as multiples of it, and TLR's runs that diverged (non-finite, or above the initial loss) or
stalled (above half of it). The loss is the whole training set's in eval mode after the last epoch.

Results are appended to ``--out`` as JSON lines (resumable: a finished run is not run again; versions and
git commit in each line), and the table is printed from whatever is there.

    python benchmarks/held_out.py [--pairs diabetes_mlp:adam,...|tabular] [--rule robust] [--seeds 1]
        [--p 0.2] [--budget] [--workers 2] [--data-dir DIR] [--out runs/held_out/results.jsonl] [--table-only]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

ALPHAS = (1.0, 1e-2, 1e-4, 1e-6)
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)
# With --budget: the share of the run both TLR's decay and the constant rates' span (TLR's own default).
ANNEAL_FRACTION = 0.2
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Task:
    """A training set held in memory, a model, a loss, a batch size and a number of epochs."""

    inputs: Tensor
    targets: Tensor
    make_model: Callable[[], nn.Module]
    loss: LossFn
    batch_size: int
    epochs: int


@dataclass(frozen=True)
class TaskSpec:
    """One entry of :data:`TASKS`: where the data comes from (``data(data_dir, limit)``: inputs and
    targets), the model, the loss, the batch size and the epochs at full scale."""

    data: Callable[[str | None, int], tuple[Tensor, Tensor]]
    model: Callable[[], nn.Module]
    loss: LossFn
    batch_size: int
    epochs: int


def _digits(_data_dir: str | None = None, _limit: int = 0) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.tensor(digits.data, dtype=torch.float32) / 16.0, torch.tensor(digits.target)


def _diabetes(_data_dir: str | None = None, _limit: int = 0) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.float32)
    return (x - x.mean(0)) / x.std(0), ((y - y.mean()) / y.std())[:, None]


def _standardised(loader: Callable[[], Any]) -> tuple[Tensor, Tensor]:
    """A scikit-learn classification set (shipped with it: offline), features standardised."""
    data = loader()
    x = torch.tensor(data.data, dtype=torch.float32)
    return (x - x.mean(0)) / x.std(0), torch.tensor(data.target)


def _cancer(_data_dir: str | None = None, _limit: int = 0) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_breast_cancer

    return _standardised(load_breast_cancer)


def _wine(_data_dir: str | None = None, _limit: int = 0) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_wine

    return _standardised(load_wine)


def _iris(_data_dir: str | None = None, _limit: int = 0) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_iris

    return _standardised(load_iris)


def _images(name: str, data_dir: str | None, limit: int) -> tuple[Tensor, Tensor]:
    from ntlr_bench.data import load

    data = load(name, data_dir, download=False, limit=limit)
    return data.train_inputs.float() / 255.0, data.train_targets  # type: ignore[union-attr]


def _fashion(data_dir: str | None, limit: int) -> tuple[Tensor, Tensor]:
    return _images("fashion_mnist", data_dir, limit)


def _mnist_pixels(data_dir: str | None, limit: int) -> tuple[Tensor, Tensor]:
    """MNIST's images, flattened, as both input and target (an autoencoder's)."""
    x = _images("mnist", data_dir, limit)[0].flatten(1)
    return x, x


class _GRUClassifier(nn.Module):
    """Reads an 8×8 digit row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(8, 64, batch_first=True)
        self.out = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        hidden, _ = self.rnn(x.view(-1, 8, 8))
        return self.out(hidden[:, -1])


def _conv_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512, 10),
    )  # fmt: skip


def _autoencoder() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 256), nn.ReLU(),
        nn.Linear(256, 784),
    )  # fmt: skip


def _regressor() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))


def _dropout_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(256, 10),
    )  # fmt: skip


def _smoothed_cross_entropy(out: Tensor, target: Tensor) -> Tensor:
    return nn.functional.cross_entropy(out, target, label_smoothing=0.1)


F = nn.functional
TASKS: dict[str, TaskSpec] = {
    "fmnist_cnn": TaskSpec(_fashion, _conv_net, F.cross_entropy, 64, 3),
    "digits_gru": TaskSpec(_digits, _GRUClassifier, F.cross_entropy, 32, 20),
    "mnist_ae": TaskSpec(_mnist_pixels, _autoencoder, F.binary_cross_entropy_with_logits, 128, 5),
    "diabetes_mlp": TaskSpec(_diabetes, _regressor, F.mse_loss, 32, 100),
    "digits_dropout": TaskSpec(_digits, _dropout_mlp, _smoothed_cross_entropy, 32, 15),
    # Added in the tenth session, after every constant of the rule was set: small tabular classification
    # sets of 569, 178 and 150 examples (17, 11 and 9 steps an epoch), where a user's model fits the
    # training set (the loss heads to zero).
    "cancer_mlp": TaskSpec(
        _cancer,
        lambda: nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2)),
        F.cross_entropy,
        32,
        50,
    ),
    "wine_mlp": TaskSpec(
        _wine, lambda: nn.Sequential(nn.Linear(13, 32), nn.Tanh(), nn.Linear(32, 3)), F.cross_entropy, 16, 100
    ),
    "iris_mlp": TaskSpec(
        _iris, lambda: nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3)), F.cross_entropy, 16, 100
    ),
}


@functools.cache
def _task(name: str, data_dir: str | None, scale: float) -> Task:
    """The task at ``scale`` of its epochs and (for the image sets) of its 10,000 training images; loaded
    once per process (a worker runs a task's 14 cells on the same tensors, which training only reads)."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}; got {name!r}")
    spec = TASKS[name]
    inputs, targets = spec.data(data_dir, max(256, int(10000 * scale)))
    epochs = max(1, round(spec.epochs * scale))
    return Task(inputs, targets, spec.model, spec.loss, spec.batch_size, epochs)


INNER: dict[str, Callable[[Any, float], torch.optim.Optimizer]] = {
    "sgd_m0.9": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "sgd_nesterov": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "sgd_m0.9_wd": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=5e-4),
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "rmsprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr),
    "adagrad": lambda p, lr: torch.optim.Adagrad(p, lr=lr),
    "nadam": lambda p, lr: torch.optim.NAdam(p, lr=lr),
    "radam": lambda p, lr: torch.optim.RAdam(p, lr=lr),
    "adamax": lambda p, lr: torch.optim.Adamax(p, lr=lr),
}
# --pairs tabular: the tasks added later, kept apart so that the table of PAIRS stays what it was.
TABULAR_PAIRS = tuple(
    (task, inner) for task in ("cancer_mlp", "wine_mlp", "iris_mlp") for inner in ("adam", "sgd_m0.9")
)
PAIRS = (
    ("fmnist_cnn", "sgd_m0.9"),
    ("fmnist_cnn", "adam"),
    ("digits_gru", "rmsprop"),
    ("digits_gru", "adam"),
    ("mnist_ae", "adam"),
    ("mnist_ae", "sgd_nesterov"),
    ("diabetes_mlp", "adam"),
    ("diabetes_mlp", "sgd_m0.9"),
    ("diabetes_mlp", "adagrad"),
    ("digits_dropout", "nadam"),
    ("digits_dropout", "sgd_m0.9_wd"),
    ("digits_dropout", "radam"),
    ("digits_dropout", "adamax"),
)


@dataclass(frozen=True)
class Cell:
    task: str
    inner: str
    method: Literal["tlr", "constant"]
    lr: float
    seed: int

    def key(self) -> tuple[str, str, str, float, int]:
        return (self.task, self.inner, self.method, self.lr, self.seed)


def run_cell(
    cell: Cell,
    rule: str,
    data_dir: str | None,
    scale: float = 1.0,
    p: float = 0.2,
    budget: bool = False,
) -> dict[str, Any]:
    """Train one cell (one torch thread) and return its result line. TLR's window is the paper's form,
    ``p`` of an epoch (``TLR(..., steps_per_epoch=N, p=p)``). ``budget``: the run's length is known,
    TLR gets it as ``total_steps`` (its rate decays linearly to 0 over the last fifth), and a constant
    rate gets the same decay (a ``LambdaLR`` of the same shape), so both anneal alike."""
    from ntlr import TLR
    from ntlr.functional import anneal_multiplier

    torch.set_num_threads(1)
    task = _task(cell.task, data_dir, scale)
    torch.manual_seed(cell.seed)
    model = task.make_model()
    steps_per_epoch = len(task.inputs) // task.batch_size
    opt: Any = INNER[cell.inner](model.parameters(), cell.lr)
    total = task.epochs * steps_per_epoch
    schedule = None
    if cell.method == "tlr":
        opt = TLR(
            opt,
            rule=rule,
            steps_per_epoch=steps_per_epoch,
            p=p,
            total_steps=total if budget else None,
            anneal_fraction=ANNEAL_FRACTION,
        )
    elif budget:
        decay = round(ANNEAL_FRACTION * total)  # the decay's length as TLR rounds it
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: anneal_multiplier(step, total, decay))
    order = torch.Generator().manual_seed(cell.seed)
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        initial = float(task.loss(model(task.inputs), task.targets))
    model.train()
    finite = True
    for _ in range(task.epochs):
        perm = torch.randperm(len(task.inputs), generator=order)
        for i in range(steps_per_epoch):
            batch = perm[i * task.batch_size : (i + 1) * task.batch_size]
            opt.zero_grad()
            loss = task.loss(model(task.inputs[batch]), task.targets[batch])
            loss.backward()
            if cell.method == "tlr":
                opt.observe_loss(loss)
            opt.step()
            if schedule is not None:
                schedule.step()
        finite = all(bool(torch.isfinite(param).all()) for param in model.parameters())
        # TLR restores a window's weights at the window's end when they went non-finite (a rollback), so an
        # epoch may end in the middle of a window it will undo; a constant rate has diverged for good.
        if not finite and cell.method == "constant":
            break
    model.eval()
    with torch.no_grad():
        final = float(task.loss(model(task.inputs), task.targets)) if finite else math.inf
    statuses: dict[str, int] = {}
    for record in getattr(opt, "history", []):
        statuses[str(record.status)] = statuses.get(str(record.status), 0) + 1
    return {
        "task": cell.task,
        "inner": cell.inner,
        "method": cell.method,
        "lr": cell.lr,
        "seed": cell.seed,
        "rule": rule if cell.method == "tlr" else None,
        "p": p if cell.method == "tlr" else None,
        "budget": budget,
        "initial": initial,
        "final": final if math.isfinite(final) else None,
        "final_lr": opt.get_lr()[0] if cell.method == "tlr" else opt.param_groups[0]["lr"],
        # The rate TLR trained, before the budget's decay (with --budget, final_lr ends at 0).
        "trained_lr": opt.optimizer.param_groups[0]["lr"] * opt.group_meta[0].factor
        if cell.method == "tlr"
        else None,
        "statuses": statuses,
        "seconds": round(time.perf_counter() - start, 2),
        "epochs": task.epochs,
        "scale": scale,
    }


def _versions() -> dict[str, str]:
    """What each result line carries of ``ntlr_bench.records.environment()`` (the bench's own record of the
    checkout as the process imported it): torch's and ntlr's versions and the commit, marked ``+dirty``
    where the checkout had uncommitted changes."""
    from ntlr_bench.records import environment

    env = environment()
    sha = (env["git_sha"] or "unknown")[:10]
    return {"torch": env["torch"], "ntlr": env["ntlr"], "git": sha + ("+dirty" if env["git_dirty"] else "")}


def available(
    pairs: list[tuple[str, str]], data_dir: str | None, scale: float = 1.0
) -> list[tuple[str, str]]:
    """The pairs whose task's data loads here; says which are skipped and why (MNIST and Fashion-MNIST
    need files: ``--data-dir`` or ``NTLR_DATA_DIR``; the others are scikit-learn's). Loaded at the run's
    ``scale``, so that cells run in this process (``--workers 0``) find the task cached."""
    from ntlr_bench.data.errors import DataError, DataNotFoundError

    usable = {}
    for task in dict.fromkeys(task for task, _ in pairs):
        try:
            _task(task, data_dir, scale)
            usable[task] = True
        except (DataError, DataNotFoundError) as error:
            first = str(error).splitlines()[0]
            print(f"skipping {task}: its data is not here ({first})", file=sys.stderr)
            usable[task] = False
    return [pair for pair in pairs if usable[pair[0]]]


def cells(pairs: list[tuple[str, str]], seeds: int) -> list[Cell]:
    out = []
    for task, inner in pairs:
        for seed in range(seeds):
            out += [Cell(task, inner, "tlr", alpha, seed) for alpha in ALPHAS]
            out += [Cell(task, inner, "constant", lr, seed) for lr in GRID]
    return out


def read_results(path: Path, rule: str, p: float, budget: bool = False) -> Iterator[dict[str, Any]]:
    """The constant-rate lines and TLR's at this rule and window, with the budget known or not (lines
    written before ``--budget`` existed ran without one)."""
    if not path.exists():
        return
    with path.open() as f:
        for line in f:
            if line.strip():
                result = json.loads(line)
                if result.get("budget", False) != budget:
                    continue
                if result["method"] == "constant" or (result["rule"] == rule and result["p"] == p):
                    yield result


def _final(result: dict[str, Any]) -> float:
    return math.inf if result["final"] is None else float(result["final"])


def _bad(result: dict[str, Any]) -> bool:
    """Diverged or stalled, by the bench's own test (``ntlr_bench.outcome``) on the line's losses."""
    from ntlr_bench.outcome import Outcome, outcome

    final = result["final"]
    record = {
        "diverged": final is None,
        "final": {} if final is None else {"train_loss": final},
        "evals": [{"step": 0, "train_loss": result["initial"]}],
    }
    return outcome(record) is not Outcome.OK


def table(results: list[dict[str, Any]]) -> list[str]:
    """One row per (task, inner): the best constant rate (the lowest mean final loss over its seeds; a
    diverged seed makes the rate's mean infinite), TLR's median and worst run over α0 and seeds."""
    rows = [
        "| task | inner | best constant (rate) | TLR median × best | TLR worst × best | TLR bad | "
        "TLR trained rates |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for task, inner in dict.fromkeys((r["task"], r["inner"]) for r in results):
        mine = [r for r in results if r["task"] == task and r["inner"] == inner]
        by_rate: dict[float, list[float]] = {}
        for r in mine:
            if r["method"] == "constant":
                by_rate.setdefault(r["lr"], []).append(_final(r))
        tlr = [r for r in mine if r["method"] == "tlr"]
        means = {lr: statistics.fmean(finals) for lr, finals in by_rate.items()}
        if not tlr or not means or not math.isfinite(min(means.values())):
            continue
        best_lr = min(means, key=lambda lr: means[lr])
        best = means[best_lr]
        finals = [_final(r) for r in tlr]
        median, worst = statistics.median(finals), max(finals)
        ratio = _ratio(median, best)
        ratios.append(ratio)
        ordered = sorted(tlr, key=lambda r: (-r["lr"], r["seed"]))
        rates = ", ".join(f"{r.get('trained_lr') or r['final_lr']:.2g}" for r in ordered)
        rows.append(
            f"| {task} | {inner} | {best:.4g} ({best_lr:g}) | {ratio:.2f} | "
            f"{_ratio(worst, best):.2f} | {sum(map(_bad, tlr))} of {len(tlr)} | {rates} |"
        )
    usable = [x for x in ratios if 0.0 < x < math.inf]
    if usable:
        geo = math.exp(statistics.fmean(math.log(x) for x in usable))
        left_out = len(ratios) - len(usable)
        rows.append(
            f"\ngeometric mean of TLR's median cell over the best constant: {geo:.3f} ({len(usable)} pairs"
            + (f"; {left_out} left out, a loss of exactly 0 on one side)" if left_out else ")")
        )
    return rows


def _ratio(loss: float, best: float) -> float:
    """``loss / best``, where a loss of exactly 0 (a float32 cross-entropy that underflowed on a fitted
    training set) gives 1 against 0 and ∞ against a positive one, 0 over a positive best."""
    if best > 0.0:
        return loss / best
    return 1.0 if loss == 0.0 else math.inf


def _parse_pairs(text: str) -> list[tuple[str, str]]:
    if not text:
        return list(PAIRS)
    if text == "tabular":
        return list(TABULAR_PAIRS)
    pairs = []
    for item in text.split(","):
        task, _, inner = item.partition(":")
        if task not in TASKS or inner not in INNER:
            raise SystemExit(
                f"--pairs: {item!r} is not task:inner with a task of {list(TASKS)} and an inner "
                f"optimizer of {sorted(INNER)}"
            )
        pairs.append((task, inner))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", default="", help="task:inner,... or 'tabular' (the later tabular tasks; default: the 13)"
    )
    parser.add_argument(
        "--rule", default="robust", help="TLR's rule (default: robust, the library's default)"
    )
    parser.add_argument(
        "--p",
        type=float,
        default=0.2,
        help="TLR's window as a fraction of an epoch (default: 0.2, the library's)",
    )
    parser.add_argument(
        "--budget",
        action="store_true",
        help="the run's length known: TLR(total_steps=...) against constant rates with the same decay",
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--data-dir", default=None, help="where MNIST and Fashion-MNIST are (else the usual places)"
    )
    parser.add_argument("--out", default="runs/held_out/results.jsonl")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the epochs and images (tests)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.workers < 0 or not 0.0 < args.scale <= 1.0:
        raise SystemExit("--seeds must be >= 1, --workers >= 0 and --scale in (0, 1]")
    import ntlr

    if args.rule not in ntlr.RULES:
        raise SystemExit(f"--rule must be one of {sorted(ntlr.RULES)}; got {args.rule!r}")
    if not args.p > 0.0:
        raise SystemExit(f"--p must be > 0; got {args.p}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        done = {
            (r["task"], r["inner"], r["method"], r["lr"], r["seed"])
            for r in read_results(out, args.rule, args.p, args.budget)
        }
        pairs = available(_parse_pairs(args.pairs), args.data_dir, args.scale)
        todo = [c for c in cells(pairs, args.seeds) if c.key() not in done]
        print(f"{len(todo)} runs to do ({len(done)} done) -> {out}", flush=True)
        versions = _versions()
        with out.open("a") as f:

            def write(result: dict[str, Any]) -> None:
                f.write(json.dumps({**result, **versions}) + "\n")
                f.flush()
                print(
                    f"{result['task']} {result['inner']} {result['method']} {result['lr']:g} "
                    f"s{result['seed']}: {result['final']} ({result['seconds']} s)",
                    flush=True,
                )

            if args.workers == 0:
                for cell in todo:
                    write(run_cell(cell, args.rule, args.data_dir, args.scale, args.p, args.budget))
            else:
                with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
                    futures = [
                        pool.submit(run_cell, c, args.rule, args.data_dir, args.scale, args.p, args.budget)
                        for c in todo
                    ]
                    for future in futures:
                        write(future.result())
    print("\n".join(table(list(read_results(out, args.rule, args.p, args.budget)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
