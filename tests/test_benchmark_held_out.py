"""benchmarks/held_out.py: one cell trains and says how, the table's arithmetic, bad pairs refused, and a
sweep that resumes instead of running again."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from benchmark_scripts import load_benchmark

pytest.importorskip("sklearn")


def _load() -> ModuleType:
    return load_benchmark("held_out")


def test_a_tlr_cell_trains_and_records_its_rule_window_and_statuses() -> None:
    held_out = _load()
    cell = held_out.Cell("diabetes_mlp", "adam", "tlr", 1e-2, 0)
    result = held_out.run_cell(cell, "robust", None, scale=0.05, p=1.0)
    assert result["rule"] == "robust" and result["p"] == 1.0
    assert math.isfinite(result["final"]) and result["final"] < result["initial"]
    assert sum(result["statuses"].values()) == result["epochs"] * (442 // 32) // 13
    constant = held_out.run_cell(
        held_out.Cell("diabetes_mlp", "adam", "constant", 1e-2, 0), "robust", None, 0.05
    )
    assert constant["rule"] is None and constant["p"] is None and constant["statuses"] == {}
    assert constant["final_lr"] == 1e-2


def test_the_table_divides_by_the_best_constant_and_counts_bad_tlr_runs() -> None:
    held_out = _load()

    def line(method: str, lr: float, final: float | None) -> dict:
        return {
            "task": "t",
            "inner": "i",
            "method": method,
            "lr": lr,
            "seed": 0,
            "initial": 1.0,
            "final": final,
            "final_lr": lr,
        }

    results = [line("constant", 0.1, 0.1), line("constant", 1.0, 0.4), line("constant", 3.0, None)]
    results += [
        line("tlr", 1.0, 0.1),
        line("tlr", 1e-2, 0.2),
        line("tlr", 1e-4, 0.6),
        line("tlr", 1e-6, None),
    ]
    rows = held_out.table(results)
    row = next(r for r in rows if r.startswith("| t | i |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0.1 (0.1)"
    assert cells[3] == "4.00"  # median of 0.1, 0.2, 0.6, inf = 0.4
    assert cells[4] == "inf"
    assert cells[5] == "2 of 4"  # 0.6 > half the initial loss, and the non-finite one
    assert "4.000 (1 pairs)" in rows[-1]


def test_a_pair_it_does_not_know_is_refused_by_name(tmp_path: Path) -> None:
    held_out = _load()
    with pytest.raises(SystemExit, match="--pairs: 'diabetes_mlp:lbfgs'"):
        held_out.main(["--pairs", "diabetes_mlp:lbfgs", "--out", str(tmp_path / "r.jsonl")])


def test_a_sweep_resumes_and_the_table_reads_only_its_own_rule_and_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held_out = _load()
    out = tmp_path / "r.jsonl"
    args = ["--pairs", "diabetes_mlp:sgd_m0.9", "--workers", "0", "--scale", "0.02", "--out", str(out)]
    assert held_out.main(args) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(held_out.ALPHAS) + len(held_out.GRID)
    assert {x["git"] for x in lines} and all("torch" in x for x in lines)
    capsys.readouterr()
    assert held_out.main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("0 runs to do (14 done)")
    assert "| diabetes_mlp | sgd_m0.9 |" in printed
    # Another window: TLR's cells run again, the constant ones are shared.
    assert held_out.main([*args, "--p", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{len(held_out.ALPHAS)} runs to do")
    # With the budget known every cell runs again (the constant rates decay too), and reads only its own.
    assert held_out.main([*args, "--budget"]) == 0
    assert capsys.readouterr().out.startswith(f"{len(held_out.ALPHAS) + len(held_out.GRID)} runs to do")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sum(x["budget"] for x in lines) == len(held_out.ALPHAS) + len(held_out.GRID)


def test_with_the_budget_known_tlr_and_a_constant_rate_decay_alike_to_zero() -> None:
    held_out = _load()
    for method in ("tlr", "constant"):
        cell = held_out.Cell("diabetes_mlp", "sgd_m0.9", method, 1e-2, 0)
        result = held_out.run_cell(cell, "robust", None, scale=0.05, p=1.0, budget=True)
        assert result["budget"] is True and math.isfinite(result["final"])
        # Past the budget's last step both rates are 0 (the last step ran at 1 / decay of the rate).
        assert result["final_lr"] == 0.0, method


def test_a_task_whose_data_is_missing_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    held_out = _load()
    monkeypatch.delenv("NTLR_DATA_DIR", raising=False)
    monkeypatch.setenv("NTLR_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    pairs = [("mnist_ae", "adam"), ("diabetes_mlp", "adam")]
    assert held_out.available(pairs, str(tmp_path / "empty")) == [("diabetes_mlp", "adam")]
    assert "skipping mnist_ae: its data is not here (data set 'mnist'" in capsys.readouterr().err


def test_the_best_constant_is_the_lowest_mean_over_seeds_and_a_diverged_seed_rules_a_rate_out() -> None:
    held_out = _load()

    def line(method: str, lr: float, seed: int, final: float | None) -> dict:
        return {
            "task": "t",
            "inner": "i",
            "method": method,
            "lr": lr,
            "seed": seed,
            "initial": 1.0,
            "final": final,
            "final_lr": lr,
        }

    results = [line("constant", 0.1, 0, 0.1), line("constant", 0.1, 1, 0.3)]  # mean 0.2
    results += [line("constant", 1.0, 0, 0.15), line("constant", 1.0, 1, 0.15)]  # mean 0.15: the best
    results += [line("constant", 3.0, 0, 0.01), line("constant", 3.0, 1, None)]  # one seed diverged
    results += [line("tlr", 1.0, 0, 0.3), line("tlr", 1.0, 1, 0.3)]
    row = next(r for r in held_out.table(results) if r.startswith("| t | i |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0.15 (1)" and cells[3] == "2.00"


def test_the_default_pairs_name_known_tasks_and_inner_optimizers() -> None:
    held_out = _load()
    pairs = held_out._parse_pairs("")
    assert len(pairs) == 13 and len(set(pairs)) == 13
    assert all(task in held_out.TASKS and inner in held_out.INNER for task, inner in pairs)
    tabular = held_out._parse_pairs("tabular")
    assert len(tabular) == 6 and all(
        task in held_out.TASKS and inner in held_out.INNER for task, inner in tabular
    )
    # Every task is in one of the two sets, and the later set leaves the table of the 13 as it was.
    assert {task for task, _ in pairs} | {task for task, _ in tabular} == set(held_out.TASKS)
    assert not {task for task, _ in pairs} & {task for task, _ in tabular}


def test_a_loss_of_exactly_zero_is_a_ratio_not_an_error() -> None:
    # A fitted training set's float32 cross-entropy underflows to 0: the table divided by it and crashed.
    held_out = _load()
    assert held_out._ratio(0.0, 0.0) == 1.0 and held_out._ratio(1e-6, 0.0) == math.inf
    assert held_out._ratio(0.0, 1e-6) == 0.0 and held_out._ratio(2e-6, 1e-6) == 2.0
    line = {"task": "wine_mlp", "inner": "adam", "seed": 0, "initial": 1.0, "final_lr": 0.1, "statuses": {}}
    results = [
        {**line, "method": "constant", "lr": 0.3, "final": 0.0},
        {**line, "method": "tlr", "lr": 1.0, "final": 0.0},
        {**line, "method": "tlr", "lr": 0.01, "final": 1e-6},
    ]
    rows = held_out.table(results)
    assert "| wine_mlp | adam | 0 (0.3) |" in rows[2] and "inf" in rows[2]
    assert not any("geometric mean" in row for row in rows)  # no pair with a usable ratio


def test_a_rule_it_does_not_know_is_refused_by_name(tmp_path: Path) -> None:
    held_out = _load()
    with pytest.raises(SystemExit, match="--rule must be one of"):
        held_out.main(["--rule", "newton", "--out", str(tmp_path / "r.jsonl")])
