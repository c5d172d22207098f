"""Committed records: 'ntlr-bench pack' writes them compressed and thinned, and every committed report
regenerates from its records with the same numbers."""

import gzip
import json
import re
import subprocess
from pathlib import Path

import pytest

from ntlr_bench.cli import main
from ntlr_bench.experiments import get_experiment
from ntlr_bench.pack import records_dir
from ntlr_bench.records import read_record, write_record
from ntlr_bench.report import load_records
from ntlr_bench.runner import run

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "experiments"


def _table_lines(readme: Path) -> list[str]:
    return [line for line in readme.read_text().splitlines() if line.startswith("|")]


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
def test_every_committed_report_regenerates_from_its_records(experiment, tmp_path, monkeypatch):
    if experiment is None:
        pytest.skip("no report in docs/experiments has its records committed yet (ntlr-bench pack)")
    folder = DOCS / experiment
    assert load_records([folder / "records"]), f"{folder / 'records'} holds no records"
    # As the command the report prints runs it: from the repository's root, the grid read off the records.
    monkeypatch.chdir(ROOT)
    out = tmp_path / experiment
    argv = ["report", experiment, "--records", f"docs/experiments/{experiment}/records"]
    assert main([*argv, "--report-dir", str(out)]) == 0
    committed, regenerated = (folder / "README.md").read_text(), (out / "README.md").read_text()
    assert regenerated == committed, f"{experiment}: the committed report differs from its records'"
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in folder.glob("*.png"))


# A folder of the machine that ran something: a report names data by what it is, not where it lay.
_MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:tmp|usr|home|work|root|var|opt|mnt|srv|data)/")


def test_no_committed_document_names_a_folder_of_the_machine_that_wrote_it():
    try:
        listed = subprocess.run(
            ["git", "ls-files", "docs", "README.md"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    found = [
        f"{name}:{i}: {line.strip()[:120]}"
        for name in listed
        if name.endswith(".md")
        for i, line in enumerate((ROOT / name).read_text().splitlines(), 1)
        if _MACHINE_PATH.search(line)
    ]
    assert not found, "\n".join(found)


def test_no_committed_run_record_names_a_folder_of_the_machine_that_ran_it():
    found = [
        f"{path}: {match.group(0)[:80]}"
        for path in sorted(DOCS.glob("*/records/*.json.gz"))
        for match in [_MACHINE_PATH.search(gzip.open(path).read().decode("utf-8"))]
        if match
    ]
    assert not found, "\n".join(found[:20])


def test_a_run_committed_under_two_experiments_has_one_result():
    # Experiments share runs (batch_robustness's batch-128 row is lr0_robustness's runs): a rerun that
    # replaced one copy and not the other left two reports disagreeing on the same run (until 2026-12-06
    # batch_robustness held the default's batch-128 runs from before RobustRule's item 15). Copies may come
    # from separate runs (other commits, times, data paths); their results must agree, to the last few
    # bits of a float64 (a least-squares optimum recomputed since differs there).
    copies: dict[str, list[Path]] = {}
    for path in sorted(DOCS.glob("*/records/*.json.gz")):
        copies.setdefault(path.name, []).append(path)
    shared = {name: paths for name, paths in copies.items() if len(paths) > 1}
    assert shared, "no run is committed under two experiments: the test checks nothing"
    differing = []
    for paths in shared.values():
        results = set()
        for path in paths:
            record = json.loads(gzip.open(path).read())
            results.add(json.dumps(_rounded({key: record.get(key) for key in _RESULT_KEYS}), sort_keys=True))
        if len(results) > 1:
            differing.append(" vs ".join(str(p.relative_to(ROOT)) for p in paths))
    assert not differing, "\n".join(differing[:10])


_RESULT_KEYS = ("final", "diverged", "diverged_at_step", "step_loss", "lr", "evals", "optimizer_history")


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value
