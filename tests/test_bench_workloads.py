"""Every workload end to end at the smoke budget, on tiny files written in its data set's real format.

Each case writes the data where ``$NTLR_DATA_DIR`` points, lets the runner find and load it, trains a few
steps and checks the step count, the losses and the workload's evaluation metrics. A workload whose data set
has no writer here fails, so a new workload cannot go untested.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ntlr_bench.data import DATASETS
from ntlr_bench.records import RunConfig
from ntlr_bench.runner import run
from ntlr_bench.workloads import WORKLOADS

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Written:
    """How many examples the written files hold per split (None: the data set is embedded)."""

    n_train: int | None
    n_test: int | None


# --------------------------------------------------------------------------- writers, one per data set


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder: Path) -> Written:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    sizes = {"train": 40, "t10k": 20}
    for prefix, n in sizes.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return Written(sizes["train"], sizes["t10k"])


def _cifar(folder: Path, files: dict[str, int], label_key: bytes, meta: tuple[str, bytes], classes: int):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    names = {meta[1]: [f"kind{c}".encode() for c in range(classes)]}
    (folder / meta[0]).write_bytes(pickle.dumps(names, protocol=2))
    for name, n in files.items():
        batch = {
            b"batch_label": b"generated",
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            label_key: rng.integers(0, classes, size=n).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar10(folder: Path) -> Written:
    files = {f"data_batch_{i}": 6 for i in range(1, 6)} | {"test_batch": 6}
    _cifar(folder, files, b"labels", ("batches.meta", b"label_names"), 10)
    return Written(30, 6)


def write_cifar100(folder: Path) -> Written:
    _cifar(folder, {"train": 24, "test": 6}, b"fine_labels", ("meta", b"fine_label_names"), 100)
    return Written(24, 6)


def write_imagenet(folder: Path) -> Written:
    rng = np.random.default_rng(0)
    per_class = {"train": 4, "val": 2}
    wnids = ["n01440764", "n01443537", "n01484850"]
    for split, count in per_class.items():
        for wnid in wnids:
            (folder / split / wnid).mkdir(parents=True)
            for i in range(count):
                h, w = int(rng.integers(60, 100)), int(rng.integers(60, 100))
                pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / wnid / f"{wnid}_{i}.JPEG", format="JPEG")
    return Written(per_class["train"] * len(wnids), per_class["val"] * len(wnids))


def write_trans_de_en(folder: Path) -> Written:
    # The Ding dictionary's line format; only example sentences (capitalised, full stop) become pairs.
    folder.mkdir(parents=True)
    animals = [("Hund", "dog"), ("Vogel", "bird"), ("Fisch", "fish")]
    lines = ["# Version :: generated", "Hund {m} | Hunde {pl} :: dog | dogs"]
    for i in range(60):
        de, en = animals[i % 3]
        lines.append(f"Der {de} Nummer {i} läuft schnell. :: The {en} number {i} runs fast.")
    (folder / "de-en").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # 60 sentence pairs; the loader holds out round(5 %) = 3 of them for validation.
    return Written(57, 3)


MULTI30K_WORDS = [("Hund", "dog"), ("Mann", "man"), ("Kind", "child"), ("Vogel", "bird")]
MULTI30K_VERBS = [("läuft", "runs"), ("spielt", "plays"), ("schläft", "sleeps")]


def write_multi30k(folder: Path) -> Written:
    folder.mkdir(parents=True)
    sizes = {"train": 20, "val": 6, "test_2016_flickr": 3}
    for stem, n in sizes.items():
        pairs = [
            (
                f"Ein {MULTI30K_WORDS[i % 4][0]} {MULTI30K_VERBS[i % 3][0]}.",
                f"A {MULTI30K_WORDS[i % 4][1]} {MULTI30K_VERBS[i % 3][1]}.",
            )
            for i in range(n)
        ]
        (folder / f"{stem}.de").write_text("".join(de + "\n" for de, _ in pairs), encoding="utf-8")
        (folder / f"{stem}.en").write_text("".join(en + "\n" for _, en in pairs), encoding="utf-8")
    return Written(sizes["train"], sizes["val"])


def embedded(folder: Path) -> Written:
    return Written(None, None)


EMBEDDED_SIZES = {"digits": (1437, 360), "lstsq": (2048, 512)}


# Keyed by data set; each writes into NTLR_DATA_DIR/<the data set's canonical folder name>.
WRITERS: dict[str, Callable[[Path], Written]] = {
    "digits": embedded,
    "lstsq": embedded,  # generated from a seed
    "mnist": write_idx,
    "fashion_mnist": write_idx,
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "imagenet": write_imagenet,
    "translation_de_en": write_trans_de_en,
    "multi30k": write_multi30k,
    # The same dictionary file; the character corpus counts characters, not pairs (see the test below).
    "ding_en_chars": write_trans_de_en,
}

# Small enough for at least two steps at the smoke budget's limits on the files above.
BATCH_SIZE = {"digits_mlp": 64, "imagenet_resnet50": 4}
DEFAULT_BATCH = 8


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """NTLR_DATA_DIR and NTLR_CACHE_DIR in tmp_path, no system folders: only what a test writes is found."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("NTLR_DATA_DIR", str(root))
    monkeypatch.setenv("NTLR_CACHE_DIR", str(tmp_path / "cache"))
    for name, spec in list(DATASETS.items()):
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, system_paths=(), remote=()))
    return root


def _expected(written: int | None, limit: int | None, full: int) -> int:
    n = full if written is None else written
    return n if limit is None else min(n, limit)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_trains_and_evaluates_at_smoke_budget(name, data_root):
    spec = WORKLOADS[name]
    assert spec.dataset in WRITERS, f"no test data writer for data set {spec.dataset!r} of workload {name!r}"
    dataset = DATASETS[spec.dataset]
    folder = data_root / (dataset.dir_names[0] if dataset.dir_names else dataset.name)
    written = WRITERS[spec.dataset](folder)
    budget = spec.budget("smoke")
    batch_size = BATCH_SIZE.get(name, DEFAULT_BATCH)
    optimizer = "tlr_sgd" if spec.task == "classification" else "sgd"
    # The embedded sets' full splits: scikit-learn's digits, the generated least squares.
    full_train, full_test = EMBEDDED_SIZES.get(spec.dataset, (0, 0))
    n_train = _expected(written.n_train, budget.train_limit, full=full_train)
    n_test = _expected(written.n_test, budget.test_limit, full=full_test)
    # Training drops the short last batch (at least one batch an epoch); evaluation sees all n_test. A
    # language model's epoch is a fixed number of steps of random crops.
    if budget.steps_per_epoch is None:
        expected_steps = max(1, n_train // batch_size) * budget.epochs
    else:
        expected_steps = budget.steps_per_epoch * budget.epochs
    assert expected_steps >= 2, "the smoke data must give at least two steps"

    record = run(
        RunConfig(name, optimizer, 0.01, batch_size=batch_size, budget="smoke"), data_dir=None, progress=False
    )

    if written.n_train is not None:  # the generated files, found through NTLR_DATA_DIR
        # Said in words that hold on another machine, never the folder of this one.
        assert record["data_source"].startswith("a local copy") and str(data_root) not in str(record)
    if spec.task == "language_model":  # characters: the sentences above and their newlines
        context = spec.model_options(budget)["context"]
        assert record["n_train"] > 50 * len("The dog number 0 runs fast.")
        assert record["n_test"] > 0 and record["n_test"] % context == 0
    else:
        assert (record["n_train"], record["n_test"]) == (n_train, n_test)
    assert record["total_steps"] == expected_steps
    assert len(record["step_loss"]) == expected_steps and not record["diverged"]
    assert all(math.isfinite(v) and v > 0 for v in record["step_loss"])
    assert [e["step"] for e in record["evals"]] == [expected_steps]
    final = record["final"]
    if "accuracy" in spec.metrics:
        assert math.isfinite(final["test_loss"]) and final["test_loss"] > 0
        assert 0.0 <= final["test_accuracy"] <= 1.0
    if "bits_per_char" in spec.metrics:
        for split in ("train", "test"):
            assert final[f"{split}_bits_per_char"] == pytest.approx(final[f"{split}_loss"] / math.log(2))
            # Finite and near log2 of the written text's ~30 characters, where a model starts: not blown up.
            assert 0 < final[f"{split}_bits_per_char"] < math.log2(40)
    if "bleu" in spec.metrics:
        assert math.isfinite(final["train_loss"]) and math.isfinite(final["test_loss"])
        assert 0.0 <= final["bleu"] <= 100.0


def test_every_workload_data_set_has_a_writer():
    # The parametrized test covers WORKLOADS as it is at collection; this names a gap directly.
    missing = sorted({spec.dataset for spec in WORKLOADS.values()} - set(WRITERS))
    assert not missing, f"add a writer for {missing}"
