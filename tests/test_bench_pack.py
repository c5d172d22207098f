"""Committed records: 'ntlr-bench pack' writes them compressed and thinned, and every committed report
regenerates from its records with the same numbers."""

import json
from pathlib import Path

import pytest

from ntlr_bench.cli import main
from ntlr_bench.experiments import get_experiment
from ntlr_bench.pack import records_dir
from ntlr_bench.records import read_record, write_record
from ntlr_bench.report import load_records
from ntlr_bench.runner import run

DOCS = Path(__file__).resolve().parent.parent / "docs" / "experiments"


def _table_lines(readme: Path) -> list[str]:
    return [line for line in readme.read_text().splitlines() if line.startswith("|")]


def _budget(experiment: str, records) -> str:
    """The smallest of the experiment's budgets whose grid holds every record (the gauntlet's tiers both
    run their workloads at "cpu", so the records' own budget does not tell the tier)."""
    ids = {r["run_id"] for r in records}
    for budget in ("smoke", "cpu", "paper"):
        try:
            planned = {c.run_id for c in get_experiment(experiment).expand(budget)}
        except ValueError:
            continue
        if ids <= planned:
            return budget
    budgets = {r["config"]["budget"] for r in records}
    return budgets.pop() if len(budgets) == 1 else "cpu"


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """The demo's smoke grid, as 'ntlr-bench sweep demo --budget smoke' leaves it in runs/."""
    runs = tmp_path_factory.mktemp("runs")
    for config in get_experiment("demo").expand("smoke"):
        write_record(run(config, progress=False), runs / "demo" / "smoke" / f"{config.run_id}.json")
    return runs


def test_pack_writes_compressed_thinned_records_that_give_the_same_report(demo_runs, tmp_path):
    full = tmp_path / "full"
    common = ["demo", "--runs", str(demo_runs), "--budget", "smoke"]
    assert main(["report", *common, "--report-dir", str(full)]) == 0
    docs = tmp_path / "docs" / "demo"
    dest = docs / "records"
    dest.mkdir(parents=True)
    (dest / "stale.json.gz").write_bytes(b"")  # a run no longer in the grid: removed
    # 16 steps a run at smoke: at most 5 points leaves every 4th step.
    assert main(["pack", *common, "--dest", str(dest), "--max-points", "5"]) == 0
    originals = {r["run_id"]: r for r in load_records([demo_runs / "demo" / "smoke"])}
    packed = sorted(dest.iterdir())
    assert [p.name for p in packed] == sorted(f"{i}.json.gz" for i in originals)
    for path in packed:
        record, original = read_record(path), originals[path.name.removesuffix(".json.gz")]
        stride = record["thinned"]["stride"]
        assert stride > 1 and len(record["step_loss"]) <= 5
        assert record["step_loss"] == json.loads(json.dumps(original["step_loss"][::stride]))
        for key in ("config", "final", "evals", "optimizer_history"):
            assert record[key] == json.loads(json.dumps(original[key])), key
    # The report regenerates from the packed records alone, by default beside them.
    assert main(["report", "demo", "--records", str(dest), "--budget", "smoke"]) == 0
    assert _table_lines(docs / "README.md") == _table_lines(full / "README.md") != []


def test_pack_says_when_there_is_nothing_to_pack(tmp_path, capsys):
    assert main(["pack", "demo", "--runs", str(tmp_path), "--dest", str(tmp_path / "out")]) == 2
    assert "no records of 'demo'" in capsys.readouterr().err


def test_records_go_beside_the_report():
    assert records_dir("hparam_grid") == Path("docs/experiments/hparam_grid/records")


@pytest.mark.parametrize(
    "experiment", sorted(p.parent.name for p in DOCS.glob("*/records") if p.is_dir()) or [None]
)
def test_every_committed_report_regenerates_from_its_records(experiment, tmp_path):
    if experiment is None:
        pytest.skip("no report in docs/experiments has its records committed yet (ntlr-bench pack)")
    folder = DOCS / experiment
    records = load_records([folder / "records"])
    assert records, f"{folder / 'records'} holds no records"
    out = tmp_path / experiment
    budget = _budget(experiment, records)
    argv = ["report", experiment, "--records", str(folder / "records"), "--budget", budget]
    assert main([*argv, "--report-dir", str(out)]) == 0
    committed, regenerated = _table_lines(folder / "README.md"), _table_lines(out / "README.md")
    assert regenerated == committed, f"{experiment}: the committed report's tables differ from its records'"
