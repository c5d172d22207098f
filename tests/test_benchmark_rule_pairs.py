"""benchmarks/rule_pairs.py: the paired comparison it prints from two folders of run records, and its
refusal of a folder that holds no library."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from benchmark_scripts import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rule_pairs.py"


def _load() -> ModuleType:
    return load_benchmark("rule_pairs")


# A committed record, its outcome rewritten: compare reads records with the bench's own reader.
TEMPLATE = next((SCRIPT.parents[1] / "docs" / "experiments" / "demo" / "records").glob("*.json.gz"))


def _record(folder: Path, name: str, final: float, *, seed: int, initial: float = 2.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(TEMPLATE, "rt") as f:
        record = json.load(f)
    record.update(diverged=False, evals=[], step_loss=[initial, final], final={"train_loss": final})
    cell = {"workload": "digits_mlp", "batch_size": 64, "optimizer": "tlr_sgd", "seed": seed}
    record["config"] = {**record["config"], **cell}
    record.pop("thinned", None)
    with gzip.open(folder / f"{name}.json.gz", "wt") as f:
        json.dump(record, f)


def test_compare_pairs_runs_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = _load()
    before, after = tmp_path / "before", tmp_path / "after"
    # Seed 0: one run halved, one doubled; seed 1: one unchanged, one that stalls after (1.5 of 2.0).
    runs = (("r0", 0.4, 0.2, 0), ("r1", 0.1, 0.2, 0), ("r2", 0.3, 0.3, 1), ("r3", 0.5, 1.5, 1))
    for name, b, a, seed in runs:
        _record(before, name, b, seed=seed)
        _record(after, name, a, seed=seed)
    _record(before, "only_before", 0.1, seed=0)  # unpaired: left out
    pairs.compare(tmp_path)
    out = capsys.readouterr().out
    assert "4 paired runs" in out
    assert "all: geo 1.316, lower 1 / higher 2 / within 2 % 1" in out  # (0.5 * 2 * 1 * 3) ** (1/4)
    assert "seed 0: geo 1.000, lower 1 / higher 1 / within 2 % 0" in out
    assert "stalled or diverged: before 0, after 1" in out
    assert "| digits_mlp | 64 | tlr_sgd | 4 | 1.316 |" in out


def test_a_folder_without_the_library_is_refused_by_name(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--before", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 2
    assert "--before" in run.stderr and "holds no ntlr package" in run.stderr
