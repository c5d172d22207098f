"""run() orchestrates; the workload's task says how to get batches, take a step and evaluate."""

import dataclasses
import types

import pytest
import torch

from ntlr_bench import runner
from ntlr_bench.batching import index_batches
from ntlr_bench.records import RunConfig
from ntlr_bench.workloads import WORKLOADS, Budget


def test_run_takes_every_step_through_the_tasks_train_step(monkeypatch):
    calls = []
    real = runner._Task.train_step

    def counted(self, model, opt, spec, batch, world):
        calls.append(type(self).__name__)
        return real(self, model, opt, spec, batch, world)

    monkeypatch.setattr(runner._Task, "train_step", counted)
    evaluated = []
    real_evaluate = runner._ImageTask.evaluate
    monkeypatch.setattr(
        runner._ImageTask, "evaluate", lambda self, m: evaluated.append(1) or real_evaluate(self, m)
    )
    record = runner.run(
        RunConfig("digits_mlp", "tlr_sgd", 0.05, batch_size=64, budget="smoke"), progress=False
    )
    assert calls == ["_ImageTask"] * record["total_steps"] == ["_ImageTask"] * len(record["step_loss"])
    assert len(evaluated) == len(record["evals"]) >= 1


@dataclasses.dataclass
class _Folder:
    """ImageFolderData's batching contract, without files (its own drop_last is tested in test_data)."""

    splits: dict
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)

    def split(self, split):
        return self.splits[split]

    def num_examples(self, split="train"):
        return len(self.splits[split][0])

    def steps_per_epoch(self, batch_size, split="train", *, drop_last=False):
        n = self.num_examples(split)
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(self, split, batch_size, *, shuffle, seed, train_augment, drop_last=False, **kwargs):
        for idx in index_batches(self.num_examples(split), batch_size, generator=None, shuffle=False):
            if drop_last and len(idx) < batch_size:
                return
            yield torch.zeros(len(idx), 3, 4, 4, dtype=torch.uint8), self.splits[split][1][idx]


def _fake_tasks(n_train):
    """Every task of the runner that passes over examples, on ``n_train`` tiny training examples and 7 test
    examples (a language model's epoch is a number of steps: see test_bench_char_lm.py)."""
    budget, dev = Budget(epochs=1), torch.device("cpu")
    labels = torch.zeros(n_train, dtype=torch.int64)
    tokens = torch.ones(n_train, 5, dtype=torch.int64)
    images = types.SimpleNamespace(
        train_inputs=torch.zeros(n_train, 1, 4, 4, dtype=torch.uint8),
        train_targets=labels,
        test_inputs=torch.zeros(7, 1, 4, 4, dtype=torch.uint8),
        test_targets=torch.zeros(7, dtype=torch.int64),
        mean=(0.5,),
        std=(0.5,),
    )
    regression = types.SimpleNamespace(
        train_inputs=torch.zeros(n_train, 3),
        train_targets=torch.zeros(n_train),
        test_inputs=torch.zeros(7, 3),
        test_targets=torch.zeros(7),
        optimum_loss=0.0,
    )
    translation = types.SimpleNamespace(
        train_src=tokens, train_tgt=tokens, valid_src=tokens[:7], valid_tgt=tokens[:7], tgt_vocab=None
    )
    folder = _Folder(
        {
            "train": ([f"{i}.jpg" for i in range(n_train)], labels),
            "val": (["v.jpg"] * 7, torch.zeros(7, dtype=torch.int64)),
        }
    )
    workload = WORKLOADS["digits_mlp"]  # no augmentation; the other tasks read nothing from it
    tasks = runner.TASKS
    return {
        "image": tasks["classification"](images, workload, budget, dev, 0),
        "regression": tasks["regression"](regression, workload, budget, dev, 0),
        "translation": tasks["translation"](translation, workload, budget, dev, 0),
        "streaming": tasks["streaming_classification"](folder, workload, budget, dev, 0),
    }


@pytest.mark.parametrize(
    ("n_train", "batch_size", "steps", "sizes"),
    [
        (10, 4, 2, [4, 4]),  # the short last batch (2) is dropped, as the authors' loaders do
        (12, 4, 3, [4, 4, 4]),
        (3, 4, 1, [3]),  # fewer examples than a batch: the one full-data batch is kept
    ],
)
def test_every_task_drops_the_short_last_training_batch(n_train, batch_size, steps, sizes):
    for name, task in _fake_tasks(n_train).items():
        batches = list(task.train_batches(batch_size, torch.Generator().manual_seed(0)))
        assert task.steps_per_epoch(batch_size) == steps, name
        assert [len(b[1]) for b in batches] == sizes, name


def test_evaluation_keeps_every_example():
    task = _fake_tasks(10)["image"]
    task.y_test = torch.tensor([0, 0, 0, 1, 1, 1, 1])  # 7 examples: not a multiple of any batch
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0]))  # always class 0
    assert task.evaluate(model)["test_accuracy"] == 3 / 7


def test_a_run_trains_on_full_batches_only():
    # The smoke budget trains on 256 digits (256 = 4·60 + 16): 4 steps an epoch, not 5.
    record = runner.run(RunConfig("digits_mlp", "sgd", 0.05, batch_size=60, budget="smoke"), progress=False)
    assert record["steps_per_epoch"] == 4 and len(record["step_loss"]) == record["total_steps"] == 4
