"""The character language model workload: its corpus and split, its causal model, its task's crops."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from ntlr_bench.data import DATASETS, CharCorpusData, DataError, load
from ntlr_bench.models import CharTransformer
from ntlr_bench.runner import TASKS, _LanguageModelTask, _task_class
from ntlr_bench.workloads import WORKLOADS, Budget

DEBIAN_FILE = Path("/usr/share/trans/de-en")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty NTLR_DATA_DIR and cache, no system folders: only what a test writes is found."""
    monkeypatch.setenv("NTLR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NTLR_CACHE_DIR", str(tmp_path / "cache"))
    for name, spec in list(DATASETS.items()):
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, system_paths=(), remote=()))
    return tmp_path


def _write_dictionary(folder: Path, n: int = 60) -> None:
    folder.mkdir(parents=True)
    lines = ["# Version :: generated", "Hund {m} | Hunde {pl} :: dog | dogs"]
    lines += [f"Der Hund Nummer {i} läuft schnell. :: The dog number {i} runs fast." for i in range(n)]
    # Another German sentence with an English side seen before: the corpus keeps that English once.
    lines.append("Der Hund Nummer 0 rennt schnell. :: The dog number 0 runs fast.")
    (folder / "de-en").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _sentences(data: CharCorpusData, split: str) -> list[str]:
    text = data.decode(getattr(data, split))
    assert text.endswith("\n")
    return text[:-1].split("\n")


# --------------------------------------------------------------------------- the corpus


def test_split_is_fixed_disjoint_and_keeps_each_sentence_once(isolated):
    _write_dictionary(isolated / "data" / "ding_en_chars")
    data = load("ding_en_chars", download=False)
    assert isinstance(data, CharCorpusData)
    train, valid = _sentences(data, "train"), _sentences(data, "valid")
    assert len(valid) == 3 and len(train) == 57  # round(5 % of 60 distinct sentences)
    assert not set(train) & set(valid)
    assert sorted(train + valid) == sorted(f"The dog number {i} runs fast." for i in range(60))
    # The fixed rule: the same split on every load, from any path to the same file.
    again = load("ding_en_chars", isolated / "data" / "ding_en_chars" / "de-en", download=False)
    assert torch.equal(again.train, data.train) and torch.equal(again.valid, data.valid)
    assert again.vocab == data.vocab == sorted(set(data.decode(data.train) + data.decode(data.valid)))
    limited = load("ding_en_chars", download=False, limit=5)
    assert len(_sentences(limited, "train")) == 5 and set(_sentences(limited, "train")) <= set(train)
    assert _sentences(limited, "valid") == valid


def test_a_dictionary_without_two_sentences_is_refused(isolated):
    _write_dictionary(isolated / "data" / "ding_en_chars", n=1)
    with pytest.raises(DataError, match="only 1 example sentences"):
        load("ding_en_chars", download=False)


def test_real_corpus_from_debian():
    if not DEBIAN_FILE.is_file():
        pytest.skip("Debian package trans-de-en not installed")
    data = load("ding_en_chars", DEBIAN_FILE, download=False)
    sentences = data.meta["sentences"]
    assert sentences["train"] > 15_000
    assert sentences["valid"] == round(0.05 * (sentences["train"] + sentences["valid"]))
    assert len(data.train) > 500_000 and 40 < len(data.vocab) < 200
    assert {"\n", " ", "e", "T", "."} <= set(data.vocab)


# --------------------------------------------------------------------------- the model


def _model(**kwargs) -> CharTransformer:
    torch.manual_seed(0)
    options = {"context": 16, "d_model": 32, "nhead": 2, "num_layers": 2, "dim_feedforward": 64, **kwargs}
    return CharTransformer(20, **options).eval()


def test_the_model_is_causal():
    model = _model()
    ids = torch.randint(0, 20, (3, 16), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 9] = (ids[:, 9] + 1) % 20
    with torch.no_grad():
        before, after = model(ids), model(changed)
    assert before.shape == (3, 16, 20)
    torch.testing.assert_close(after[:, :9], before[:, :9])
    assert (after[:, 9:] - before[:, 9:]).abs().amax(-1).min() > 1e-6  # every later position sees it
    # A shorter input is the same model on a prefix.
    with torch.no_grad():
        torch.testing.assert_close(model(ids[:, :5]), before[:, :5])


def test_the_output_layer_is_the_token_embedding():
    model = _model()
    assert model.head.weight is model.token.weight
    names = {name for name, _ in model.named_parameters()}
    assert "head.weight" not in names  # one tensor, counted and updated once


@pytest.mark.parametrize(
    ("ids", "kwargs", "error", "match"),
    [
        (torch.zeros(2, 17, dtype=torch.int64), {}, ValueError, "context=16"),
        (torch.zeros(16, dtype=torch.int64), {}, ValueError, "ids must be"),
        (None, {"nhead": 3}, ValueError, "divisible by nhead"),
        (None, {"context": 0}, ValueError, "context"),
        (None, {"dropout": 1.0}, ValueError, "dropout"),
    ],
)
def test_bad_input_is_named(ids, kwargs, error, match):
    with pytest.raises(error, match=match):
        model = _model(**kwargs)
        model(ids)


# --------------------------------------------------------------------------- the task


def _corpus(n_train: int = 500, n_valid: int = 101) -> CharCorpusData:
    text = torch.arange(n_train + n_valid) % 7
    return CharCorpusData("toy", text[:n_train], text[n_train:], [str(i) for i in range(7)])


def _task(budget: Budget, data: CharCorpusData | None = None) -> _LanguageModelTask:
    workload = dataclasses.replace(WORKLOADS["char_transformer"], model_kwargs={"context": 10})
    return _LanguageModelTask(data or _corpus(), workload, budget, torch.device("cpu"), 0)


def test_a_step_is_random_crops_and_their_next_characters():
    task = _task(Budget(epochs=1, steps_per_epoch=3))
    assert task.steps_per_epoch(batch_size=999) == 3  # an epoch is steps, whatever the batch
    batches = list(task.train_batches(4, torch.Generator().manual_seed(0)))
    assert len(batches) == 3
    for inputs, targets in batches:
        assert inputs.shape == targets.shape == (4, 10)
        torch.testing.assert_close(targets, (inputs + 1) % 7)  # the toy text counts modulo 7
    starts = torch.cat([inputs[:, 0] for inputs, _ in batches])
    assert len(set(starts.tolist())) > 1


def test_evaluation_scores_each_validation_character_once():
    task = _task(Budget(epochs=1, steps_per_epoch=1))
    # 101 validation characters: 10 crops of 10 predictions each (the first character is only an input).
    assert task.n_test == 100 and task.valid_crops.shape == (10, 11)
    torch.testing.assert_close(task.valid_crops[1:, 0], task.valid_crops[:-1, -1])
    assert _task(Budget(epochs=1, steps_per_epoch=1, test_limit=4)).n_test == 40

    class Uniform(torch.nn.Module):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*ids.shape, 7)

    metrics = task.evaluate(Uniform())
    assert metrics["test_loss"] == pytest.approx(math.log(7))
    assert metrics["test_bits_per_char"] == pytest.approx(math.log2(7))
    assert metrics["train_bits_per_char"] == pytest.approx(math.log2(7))


def test_a_budget_without_steps_or_a_text_shorter_than_a_crop_is_refused():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        _task(Budget(epochs=1))
    with pytest.raises(ValueError, match="valid text has 8 characters"):
        _task(Budget(epochs=1, steps_per_epoch=1), _corpus(n_valid=8))


def test_every_workload_task_has_a_training_loop():
    assert {spec.task for spec in WORKLOADS.values()} <= set(TASKS)
    # Only ImageNet's loader applies the budget's limit: a sweep caches every other data set once.
    assert {name for name, task in TASKS.items() if not task.whole_data} == {"streaming_classification"}
    unknown = dataclasses.replace(WORKLOADS["char_transformer"], task="reinforcement")
    with pytest.raises(ValueError, match=r"task must be one of .*'reinforcement'"):
        _task_class(unknown)
