"""Train one workload with one optimizer and write a self-describing run record."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .batching import crop_flip, index_batches, normalize, num_batches
from .data.origin import describe_origin
from .optimizers import BuiltOptimizer, OptimizerSpec
from .progress import progress_bar
from .records import RECORD_FORMAT, Evaluation, RunConfig, RunRecord, environment, write_record
from .workloads import Budget, WorkloadSpec, get_workload

__all__ = ["RECORD_FORMAT", "TASKS", "resolve_device", "run"]

# Evaluating on the whole training set of a large data set would cost more than the epoch on a CPU;
# a fixed subset of this size estimates the training loss well enough for curves.
TRAIN_EVAL_LIMIT = 10_000
EVAL_BATCH = 1024
BLEU_SENTENCES = 500


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device: {exc}") from None


def _init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, this rank's device) under torchrun; (0, 1, device) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _subset(n: int, limit: int | None) -> Tensor | None:
    """A fixed (seed-independent) random subset of ``range(n)``, so every run sees the same examples."""
    if limit is None or limit >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(1234))[:limit].sort().values


def _take(limit: int | None, device: torch.device, *tensors: Tensor) -> list[Tensor]:
    """The same fixed subset (see ``_subset``) of each of ``tensors``, on ``device``."""
    idx = _subset(len(tensors[0]), limit)
    return [(t if idx is None else t[idx.to(t.device)]).to(device) for t in tensors]


def _progress(total: int, enabled: bool, desc: str) -> Any:
    # None off a terminal: a log file would get a line per refresh (see progress.py).
    return progress_bar(total, desc=desc, unit="step", leave=False) if enabled else None


class _Task:
    """The data-specific half of a run: its data, its batches, one training step on a batch, and evaluation.

    ``run`` loads the data with ``load_data``, builds the task from it (every subclass takes ``(data,
    workload, budget, device, seed)``), then loops over ``train_batches``, calling ``train_step`` on each,
    and calls ``evaluate`` at the epochs the budget says. A subclass gives ``train_batches``, ``loss`` and
    ``evaluate``; ``train_step`` (the loss, its gradient and the optimizer's step) serves every task
    whose step is "minimise ``loss``". ``TASKS`` maps a workload's ``task`` to its subclass.

    Training drops the short last batch of every epoch, as the authors' loaders do (``drop_last=True``):
    a handful of examples right before an evaluation is a noisy step (it blew SLS and SPS up on the
    CIFAR-10 cpu subset, 5000 = 39·128 + 8) and a noisy step in TLR's windows. ``steps_per_epoch`` is
    therefore ``n_train // batch_size``, and ``train_batches`` must yield exactly that many. Evaluation
    keeps every example.
    """

    n_train: int
    n_test: int
    # load_data gives the whole data set whatever the budget, so a sweep may load it once for all its runs.
    whole_data: ClassVar[bool] = True

    def __init__(
        self, data: Any, workload: WorkloadSpec, budget: Budget, device: torch.device, seed: int
    ) -> None:
        raise NotImplementedError

    @classmethod
    def load_data(cls, workload: WorkloadSpec, budget: Budget, data_dir: str | os.PathLike | None) -> Any:
        """The workload's data set, whole: the task takes its budget's subsets (see ``_take``)."""
        from .data import load

        return load(workload.dataset, data_dir)

    def steps_per_epoch(self, batch_size: int) -> int:
        # n_train // batch_size, but at least 1: with fewer examples than a batch, the one full-data
        # batch is kept rather than dropped (see batching.num_batches).
        return num_batches(self.n_train, batch_size, drop_last=True)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        raise NotImplementedError

    def train_step(self, model: nn.Module, opt: Any, spec: OptimizerSpec, batch: Any, world: int) -> Tensor:
        """One optimizer step on ``batch``; returns this process's loss of the batch (before the step)."""

        def closure(batch: Any = batch) -> Tensor:
            # Line searches re-evaluate the loss under no_grad: only differentiate when asked to.
            loss = self.loss(model, batch)
            if torch.is_grad_enabled():
                opt.zero_grad(set_to_none=True)
                loss.backward()
            return loss

        if spec.needs_closure:
            loss = opt.step(closure)
        else:
            loss = closure()
            if getattr(opt, "observes_loss", False) is True:
                # TLR's rule or loss guard sees the loss every process sees (see observe_loss).
                opt.observe_loss(_global_mean(loss.detach(), world))
            opt.step()
        return loss

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        raise NotImplementedError


class _ImageTask(_Task):
    def __init__(
        self, data: Any, workload: WorkloadSpec, budget: Budget, device: torch.device, seed: int
    ) -> None:
        self.x_train, self.y_train = _take(budget.train_limit, device, data.train_inputs, data.train_targets)
        self.x_test, self.y_test = _take(budget.test_limit, device, data.test_inputs, data.test_targets)
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        self.mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
        self.augment = workload.augment
        self.x_train_eval, self.y_train_eval = _take(TRAIN_EVAL_LIMIT, device, self.x_train, self.y_train)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        for idx in index_batches(self.n_train, batch_size, generator=generator, shuffle=True, drop_last=True):
            idx = idx.to(self.x_train.device)
            images = self.x_train[idx]
            if self.augment == "crop_flip":
                images = crop_flip(images, generator=generator)
            yield normalize(images, self.mean, self.std), self.y_train[idx]

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        inputs, targets = batch
        return F.cross_entropy(model(inputs), targets)

    @torch.no_grad()
    def _metrics(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> tuple[float, float]:
        total_loss, correct = 0.0, 0
        for start in range(0, len(targets), EVAL_BATCH):
            logits = model(normalize(inputs[start : start + EVAL_BATCH], self.mean, self.std))
            y = targets[start : start + EVAL_BATCH]
            total_loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        n = max(1, len(targets))
        return total_loss / n, correct / n

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        train_loss, train_acc = self._metrics(model, self.x_train_eval, self.y_train_eval)
        test_loss, test_acc = self._metrics(model, self.x_test, self.y_test)
        return {
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "test_loss": test_loss,
            "test_accuracy": test_acc,
        }


class _RegressionTask(_Task):
    """Mean squared error on in-memory float features; the excess over the known optimum is reported."""

    def __init__(
        self, data: Any, workload: WorkloadSpec, budget: Budget, device: torch.device, seed: int
    ) -> None:
        self.x_train, self.y_train = _take(budget.train_limit, device, data.train_inputs, data.train_targets)
        self.x_test, self.y_test = _take(budget.test_limit, device, data.test_inputs, data.test_targets)
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        # The optimum is of the whole training split: with a limit, the excess is only indicative.
        self.optimum = data.optimum_loss

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        for idx in index_batches(self.n_train, batch_size, generator=generator, shuffle=True, drop_last=True):
            idx = idx.to(self.x_train.device)
            yield self.x_train[idx], self.y_train[idx]

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        inputs, targets = batch
        return F.mse_loss(model(inputs).squeeze(-1), targets)

    @torch.no_grad()
    def _mse(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
        total = sum(
            float(
                F.mse_loss(
                    model(inputs[i : i + EVAL_BATCH]).squeeze(-1).double(),
                    targets[i : i + EVAL_BATCH].double(),
                    reduction="sum",
                )
            )
            for i in range(0, len(targets), EVAL_BATCH)
        )
        return total / max(1, len(targets))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        train_loss = self._mse(model, self.x_train, self.y_train)
        return {
            "train_loss": train_loss,
            "train_excess_loss": train_loss - self.optimum,
            "test_loss": self._mse(model, self.x_test, self.y_test),
        }


class _StreamingImageTask(_ImageTask):
    """ImageFolder data too large for memory (ImageNet): batches decoded by the loader's workers."""

    def __init__(
        self, data: Any, workload: WorkloadSpec, budget: Budget, device: torch.device, seed: int
    ) -> None:
        # The limits again, on the file lists: a caller's ``data=`` may have been loaded without them, and
        # the loader applies one limit to both splits.
        splits = dict(data.splits)
        for split, limit in (("train", budget.train_limit), ("val", budget.test_limit)):
            paths, targets = data.split(split)
            keep = _subset(len(paths), limit)
            if keep is not None:
                splits[split] = ([paths[i] for i in keep.tolist()], targets[keep])
        self.data = dataclasses.replace(data, splits=splits)
        self.device, self.seed, self.epoch = device, seed, 0
        self.sizing = {} if budget.image_size is None else {"image_size": budget.image_size}
        self.n_train, self.n_test = self.data.num_examples("train"), self.data.num_examples("val")
        self.mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)

    whole_data = False  # the loader takes the budget's limit (below)

    @classmethod
    def load_data(cls, workload: WorkloadSpec, budget: Budget, data_dir: str | os.PathLike | None) -> Any:
        # Listing 1.28M files to keep 2,000 of them: the loader takes the limit itself.
        from .data import load

        return load(workload.dataset, data_dir, limit=budget.train_limit)

    def _drop_last(self, batch_size: int) -> bool:
        # The short last batch is dropped, except when it is the only one (fewer images than a batch).
        return self.n_train >= batch_size

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.data.steps_per_epoch(batch_size, drop_last=self._drop_last(batch_size))

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        self.epoch += 1
        for images, targets in self.data.batches(
            "train",
            batch_size,
            shuffle=True,
            seed=self.seed + self.epoch,
            train_augment=True,
            drop_last=self._drop_last(batch_size),
            **self.sizing,
        ):
            yield normalize(images.to(self.device), self.mean, self.std), targets.to(self.device)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        total_loss, correct, n = 0.0, 0, 0
        for images, targets in self.data.batches(
            "val", EVAL_BATCH // 4, shuffle=False, seed=0, train_augment=False, **self.sizing
        ):
            targets = targets.to(self.device)
            logits = model(normalize(images.to(self.device), self.mean, self.std))
            total_loss += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
            correct += int((logits.argmax(1) == targets).sum())
            n += len(targets)
        n = max(1, n)
        return {"test_loss": total_loss / n, "test_accuracy": correct / n}


class _TranslationTask(_Task):
    def __init__(
        self, data: Any, workload: WorkloadSpec, budget: Budget, device: torch.device, seed: int
    ) -> None:
        self.src, self.tgt = _take(budget.train_limit, device, data.train_src, data.train_tgt)
        self.valid_src, self.valid_tgt = _take(budget.test_limit, device, data.valid_src, data.valid_tgt)
        self.n_train, self.n_test = len(self.src), len(self.valid_src)
        self.tgt_vocab = data.tgt_vocab
        self.src_eval, self.tgt_eval = _take(2_000, device, self.src, self.tgt)

    @staticmethod
    def _trim(rows: Tensor) -> Tensor:
        # Batches padded to the split's longest sentence waste most of their attention on padding.
        length = int((rows != 0).sum(1).max())
        return rows[:, : max(length, 2)]

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        for idx in index_batches(self.n_train, batch_size, generator=generator, shuffle=True, drop_last=True):
            idx = idx.to(self.src.device)
            yield self._trim(self.src[idx]), self._trim(self.tgt[idx])

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        from .metrics import token_cross_entropy

        src, tgt = batch
        return token_cross_entropy(model(src, tgt[:, :-1]), tgt[:, 1:])

    @torch.no_grad()
    def _loss_over(self, model: nn.Module, src: Tensor, tgt: Tensor) -> float:
        from .metrics import token_cross_entropy

        total, tokens = 0.0, 0
        for start in range(0, len(src), 256):
            s, t = self._trim(src[start : start + 256]), self._trim(tgt[start : start + 256])
            n = int((t[:, 1:] != 0).sum())
            total += float(token_cross_entropy(model(s, t[:, :-1]), t[:, 1:])) * n
            tokens += n
        return total / max(1, tokens)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from .metrics import corpus_bleu

        result = {
            "train_loss": self._loss_over(model, self.src_eval, self.tgt_eval),
            "test_loss": self._loss_over(model, self.valid_src, self.valid_tgt),
        }
        hyps, refs = [], []
        for start in range(0, min(self.n_test, BLEU_SENTENCES), 128):
            s = self._trim(self.valid_src[start : start + 128])
            t = self._trim(self.valid_tgt[start : start + 128])
            out = cast(Any, model).greedy_decode(s, max_len=t.shape[1] + 10)  # the translation model's
            hyps += out.tolist()
            refs += t[:, 1:].tolist()
        result["bleu"] = corpus_bleu(hyps, refs, self.tgt_vocab) if hyps else float("nan")
        return result


class _LanguageModelTask(_Task):
    """Next-character prediction on a character corpus (``CharCorpusData``) by a causal model.

    A step draws ``batch_size`` crops of ``context + 1`` characters at uniformly random offsets of the
    training text (``train_limit``: its first that many characters); the loss is the mean next-character
    cross-entropy over every position of every crop. There are no passes over a data set to count, so an
    epoch is the budget's ``steps_per_epoch`` steps. ``context`` is the model's.

    Evaluation scores the whole validation text cut into consecutive crops (``test_limit``: the first that
    many crops), each character once, and as many crops of the training text at evenly spaced offsets. It
    reports ``*_loss`` in nats per character, the unit the optimizer minimises and in which the divergence
    test compares the end with the first step, and ``*_bits_per_char``, the usual unit for a language model.
    ``n_train`` and ``n_test`` count characters.
    """

    def __init__(
        self, data: Any, workload: WorkloadSpec, budget: Budget, device: torch.device, seed: int
    ) -> None:
        if budget.steps_per_epoch is None:
            raise ValueError(
                f"workload {workload.name!r}: a language model's budget must set steps_per_epoch"
            )
        self.steps = budget.steps_per_epoch
        self.context = int(workload.model_options(budget)["context"])
        self.text = data.train[: budget.train_limit].to(device)
        valid = data.valid.to(device)
        for split, n in (("train", len(self.text)), ("valid", len(valid))):
            if n <= self.context:
                raise ValueError(f"the {split} text has {n} characters: a crop needs {self.context + 1}")
        # Crops overlap by one character: the last of one is the first input of the next.
        n_crops = min((len(valid) - 1) // self.context, budget.test_limit or len(valid))
        self.valid_crops = _crops(valid, torch.arange(n_crops) * self.context, self.context + 1)
        starts = torch.linspace(0, len(self.text) - self.context - 1, n_crops).long()
        self.train_crops = _crops(self.text, starts, self.context + 1)
        self.n_train, self.n_test = len(self.text), n_crops * self.context

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.steps

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        for _ in range(self.steps):
            starts = torch.randint(0, len(self.text) - self.context, (batch_size,), generator=generator)
            crops = _crops(self.text, starts, self.context + 1)
            yield crops[:, :-1], crops[:, 1:]

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        inputs, targets = batch
        logits = model(inputs)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))

    @torch.no_grad()
    def _nats_per_char(self, model: nn.Module, crops: Tensor) -> float:
        total = 0.0
        for start in range(0, len(crops), EVAL_BATCH // 4):
            batch = crops[start : start + EVAL_BATCH // 4]
            logits = model(batch[:, :-1]).float()
            total += float(
                F.cross_entropy(
                    logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum"
                )
            )
        return total / max(1, crops[:, 1:].numel())

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        train_loss = self._nats_per_char(model, self.train_crops)
        test_loss = self._nats_per_char(model, self.valid_crops)
        return {
            "train_loss": train_loss,
            "train_bits_per_char": train_loss / math.log(2),
            "test_loss": test_loss,
            "test_bits_per_char": test_loss / math.log(2),
        }


def _crops(text: Tensor, starts: Tensor, length: int) -> Tensor:
    """``(len(starts), length)``: the characters of ``text`` from each start on."""
    return text[starts.to(text.device).unsqueeze(1) + torch.arange(length, device=text.device)]


# A workload's ``task`` -> its training loop: the one place a task name is read.
TASKS: dict[str, type[_Task]] = {
    "classification": _ImageTask,
    "streaming_classification": _StreamingImageTask,
    "regression": _RegressionTask,
    "translation": _TranslationTask,
    "language_model": _LanguageModelTask,
}


def _task_class(workload: WorkloadSpec) -> type[_Task]:
    if workload.task not in TASKS:
        raise ValueError(
            f"workload {workload.name!r}: task must be one of {sorted(TASKS)}, got {workload.task!r}"
        )
    return TASKS[workload.task]


def _load_data(workload: WorkloadSpec, budget: Budget, data_dir: str | os.PathLike | None) -> Any:
    """The data ``workload`` trains on under ``budget`` (a sweep loads it once for many runs)."""
    return _task_class(workload).load_data(workload, budget, data_dir)


@dataclasses.dataclass
class _Setup:
    """A run ready to train: what ``_prepare`` built from a config, in the order the seed sees it."""

    config: RunConfig
    workload: WorkloadSpec
    budget: Budget
    batch_size: int
    rank: int
    world: int
    device: torch.device
    generator: torch.Generator
    data: Any
    task: _Task
    model: nn.Module
    train_model: nn.Module  # the model, or its DDP wrapper under torchrun
    steps_per_epoch: int
    total_steps: int
    spec: OptimizerSpec  # the optimizer's registry entry
    built: BuiltOptimizer  # the optimizer, its scheduler, lr getter and history
    started: float


@dataclasses.dataclass
class _Curves:
    """What training measured."""

    step_loss: list[float] = dataclasses.field(default_factory=list)
    lr: list[list[float]] = dataclasses.field(default_factory=list)
    evals: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    diverged_at: int | None = None


def run(
    config: RunConfig,
    *,
    out: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    progress: bool = True,
    data: Any = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunRecord:
    """Train ``config`` and return its record; with ``out``, also write it there atomically.

    A training loss that stays non-finite for an epoch's steps stops the run and is recorded
    (``diverged``, at the first of those steps), not raised; one that recovers within the epoch (a rule
    that rolls a window back) lets the run go on, as it would in a user's loop. ``data`` lets a
    caller that runs many configs on one data set load it once.
    """
    setup = _prepare(config, data_dir=data_dir, device=device, data=data)
    bar = _progress(
        setup.total_steps,
        progress and setup.rank == 0,
        f"{config.workload}/{config.optimizer} lr={config.lr:g}",
    )
    try:
        curves = _train(setup, bar, on_epoch)
    finally:
        if bar is not None:
            bar.close()
    record = _record(setup, curves)
    if out is not None and setup.rank == 0:
        write_record(record, out)
    return record


def _prepare(config: RunConfig, *, data_dir: str | os.PathLike | None, device: str, data: Any) -> _Setup:
    """Check ``config``, join the process group under torchrun, seed, and build data, model and optimizer."""
    from .optimizers import OPTIMIZERS, build_optimizer

    workload = get_workload(config.workload)
    task_class = _task_class(workload)  # an unknown task fails before any data is loaded
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {config.optimizer!r}")
    budget = workload.budget(config.budget)
    batch_size = workload.batch_size if config.batch_size is None else config.batch_size
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not (isinstance(config.lr, int | float) and math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {config.lr!r}")
    rank, world, dev = _init_distributed(resolve_device(device))
    if batch_size < world:
        raise ValueError(f"batch_size ({batch_size}) must be at least the number of processes ({world})")
    started = time.perf_counter()

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if data is None:
        data = _load_data(workload, budget, data_dir)
    task = task_class(data, workload, budget, dev, config.seed)
    model = workload.build_model(data, budget).to(dev)
    # Under torchrun every rank builds the same model from the same seed and trains on its slice of each
    # global batch; DDP averages the gradients, so the run is the single-process run of that batch.
    train_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    steps_per_epoch = task.steps_per_epoch(batch_size)
    total_steps = steps_per_epoch * budget.epochs
    spec, built = build_optimizer(
        config.optimizer,
        model.parameters(),
        lr=config.lr,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        **config.overrides,
    )
    return _Setup(
        config=config,
        workload=workload,
        budget=budget,
        batch_size=batch_size,
        rank=rank,
        world=world,
        device=dev,
        generator=generator,
        data=data,
        task=task,
        model=model,
        train_model=train_model,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        spec=spec,
        built=built,
        started=started,
    )


def _evaluate(
    setup: _Setup, curves: _Curves, epoch: int, on_epoch: Callable[[dict[str, Any]], None] | None
) -> None:
    setup.model.eval()
    if setup.spec.has_train_eval:
        _averaging(setup.built).eval()
    metrics = setup.task.evaluate(setup.model)
    curves.evals.append({"epoch": epoch, "step": len(curves.step_loss), **metrics})
    if on_epoch is not None:
        on_epoch(curves.evals[-1])


def _averaging(built: BuiltOptimizer) -> Any:
    """An optimizer with train()/eval() (Schedule-Free's, DoG's averaging), not in torch.optim's API."""
    return built.optimizer


def _train(setup: _Setup, bar: Any, on_epoch: Callable[[dict[str, Any]], None] | None) -> _Curves:
    """The epochs: a step per batch (``task.train_step``), evaluations, and the divergence stop."""
    task, opt, spec, built = setup.task, setup.built.optimizer, setup.spec, setup.built
    world, rank, budget = setup.world, setup.rank, setup.budget
    curves = _Curves()
    step_loss, lr_curve, evals = curves.step_loss, curves.lr, curves.evals
    nonfinite_since: int | None = None  # the first step of the current run of non-finite losses
    for epoch in range(1, budget.epochs + 1):
        setup.model.train()
        if spec.has_train_eval:
            _averaging(built).train()
        for batch in task.train_batches(setup.batch_size, setup.generator):
            if world > 1:
                batch = tuple(t.tensor_split(world)[rank] for t in batch)
            loss = task.train_step(setup.train_model, opt, spec, batch, world)
            if built.scheduler is not None:
                built.scheduler.step()
            value = float(_global_mean(loss.detach(), world))
            step_loss.append(value)
            lr_curve.append([float(x) for x in built.lr_getter()])
            if bar is not None:
                bar.update(1)
                if len(step_loss) % 20 == 0:
                    bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr_curve[-1][0]:.3g}", refresh=False)
            if math.isfinite(value):
                nonfinite_since = None
            elif nonfinite_since is None:
                nonfinite_since = len(step_loss)
            # An optimizer may recover from a non-finite loss (TLR's robust rule rolls the window
            # back), as it would in a user's loop: give every optimizer an epoch's patience.
            if nonfinite_since is not None and len(step_loss) - nonfinite_since + 1 >= setup.steps_per_epoch:
                curves.diverged_at = nonfinite_since
                break
        if curves.diverged_at is not None:
            break
        if epoch % budget.eval_every == 0 or epoch == budget.epochs:
            _evaluate(setup, curves, epoch, on_epoch)
            if not math.isfinite(evals[-1].get("train_loss", evals[-1].get("test_loss", 0.0))):
                # The weights overflowed after the last finite batch loss.
                curves.diverged_at = len(step_loss) if nonfinite_since is None else nonfinite_since
                break
    return curves


def _record(setup: _Setup, curves: _Curves) -> RunRecord:
    config, workload, spec, built = setup.config, setup.workload, setup.spec, setup.built
    checksums = getattr(setup.data, "meta", {}).get("checksums_verified")
    opt = built.optimizer
    record: RunRecord = {
        "format": RECORD_FORMAT,
        "run_id": config.run_id,
        "config": config.to_dict(),
        "batch_size": setup.batch_size,
        "workload": {
            "name": workload.name,
            "description": workload.description,
            "dataset": workload.dataset,
            "budget": asdict(setup.budget),
        },
        "optimizer": {
            "name": spec.name,
            "description": spec.description,
            "package": spec.package,
            "class": type(opt).__name__,
            # What the spec's defaults resolved to (TLR's K, p, γ, cap), so a record outlives a change
            # of the library's defaults.
            "settings": _optimizer_settings(opt),
        },
        "data_source": describe_origin(workload.dataset, getattr(setup.data, "source", ""), checksums),
        "n_train": setup.task.n_train,
        "n_test": setup.task.n_test,
        "n_params": sum(p.numel() for p in setup.model.parameters()),
        "steps_per_epoch": setup.steps_per_epoch,
        "total_steps": setup.total_steps,
        "device": str(setup.device),
        "world_size": setup.world,
        "environment": environment(),
        "wall_time_s": time.perf_counter() - setup.started,
        "diverged": curves.diverged_at is not None,
        "diverged_at_step": curves.diverged_at,
        "step_loss": curves.step_loss,
        "lr": curves.lr,
        "evals": cast(list[Evaluation], curves.evals),
        "final": curves.evals[-1] if curves.evals else {},
        "optimizer_history": built.extra_state() if built.extra_state is not None else None,
    }
    if checksums is not None:
        record["data_checksums"] = list(checksums)
    return record


def _optimizer_settings(opt: Any) -> dict[str, Any]:
    """What a TLR-style optimizer's defaults resolved to (K, p, γ, cap, the rule's name)."""
    settings = {
        k: getattr(opt, k)
        for k in ("update_every", "p", "gamma", "max_factor", "loss_guard")
        if hasattr(opt, k)
    }
    rule = getattr(opt, "rule", None)
    if rule is not None:
        settings["rule"] = getattr(rule, "name", type(rule).__name__)
    return settings


def _global_mean(value: Tensor, world: int) -> Tensor:
    if world == 1:
        return value
    import torch.distributed as dist

    value = value.clone()
    dist.all_reduce(value)
    return value / world
