"""The run record's schema: what the runner writes matches it, and a report refuses what it cannot read."""

import gzip
import json
import math

import pytest

from ntlr_bench.cli import main
from ntlr_bench.outcome import final_train_loss, initial_loss, outcome
from ntlr_bench.records import (
    RECORD_FORMAT,
    RecordError,
    RunConfig,
    RunRecord,
    check_record,
    curve_steps,
    read_record,
    thin_record,
    write_record,
)
from ntlr_bench.report import load_records
from ntlr_bench.runner import run


@pytest.fixture(scope="module")
def record():
    return run(RunConfig("digits_mlp", "tlr_sgd", 0.1, batch_size=64, budget="smoke"), progress=False)


def test_the_runner_writes_exactly_the_schemas_keys(record):
    assert record["format"] == RECORD_FORMAT == "ntlr-bench-run/1"
    schema = RunRecord.__required_keys__ | RunRecord.__optional_keys__
    assert set(record) - schema == set(), "a key the runner writes is not in records.RunRecord: add it"
    assert RunRecord.__required_keys__ <= set(record)
    assert check_record(record) is record


def test_a_written_record_reads_back(record, tmp_path):
    path = write_record(record, tmp_path / "r.json")
    assert read_record(path)["step_loss"] == record["step_loss"]
    assert [r["run_id"] for r in load_records([tmp_path])] == [record["run_id"]]


def test_a_record_without_the_keys_added_within_the_format_loads(record):
    old = {k: v for k, v in record.items() if k not in ("world_size", "optimizer_history")}
    old["optimizer"] = {k: v for k, v in record["optimizer"].items() if k != "settings"}
    assert check_record(old) is old


def _broken(record):
    yield "format", {**record, "format": "ntlr-bench-run/2"}, "format 'ntlr-bench-run/2'"
    yield "no format", {k: v for k, v in record.items() if k != "format"}, "no 'format'"
    yield "other json", {"hello": 1}, "no 'format'"
    yield (
        "missing keys",
        {k: v for k, v in record.items() if k not in ("evals", "final")},
        "missing evals, final",
    )
    yield "wrong type", {**record, "step_loss": "1,2,3"}, "'step_loss' is a str"
    yield "nested", {**record, "workload": {"name": "x"}}, "'workload' lacks budget, dataset, description"
    yield "a list", [record], "a JSON list"


@pytest.mark.parametrize("case", range(7))
def test_report_refuses_a_record_it_cannot_read_naming_the_file(case, record, tmp_path):
    name, data, why = list(_broken(record))[case]
    write_record(record, tmp_path / "good.json")
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(RecordError) as caught:
        load_records([tmp_path])
    message = str(caught.value)
    assert str(tmp_path / "bad.json") in message and why in message, name


def test_report_refuses_a_file_that_is_not_json(tmp_path):
    (tmp_path / "torn.json").write_text('{"format": "ntlr-bench-run/1", "run_')
    with pytest.raises(RecordError, match=r"torn\.json: not a run record: not valid JSON"):
        load_records([tmp_path])


def test_the_cli_report_says_which_file_it_cannot_read(record, tmp_path, capsys):
    folder = tmp_path / "demo" / "cpu"
    write_record(record, folder / "good.json")
    (folder / "old.json").write_text(json.dumps({**record, "format": "ntlr-bench-run/0"}))
    assert main(["report", "demo", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ntlr-bench: error:") and str(folder / "old.json") in err and "Traceback" not in err


def test_a_compressed_record_reads_back_and_loads(record, tmp_path):
    path = write_record(record, tmp_path / "sub" / f"{record['run_id']}.json.gz")
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert json.loads(gzip.decompress(path.read_bytes())) == json.loads(json.dumps(record))
    assert read_record(path) == json.loads(json.dumps(record))
    assert write_record(record, tmp_path / "again.json.gz").read_bytes() == path.read_bytes()  # no timestamp
    write_record(record, tmp_path / "plain.json")  # the same run twice counts once
    assert [r["run_id"] for r in load_records([tmp_path])] == [record["run_id"]]


def test_a_torn_compressed_record_is_refused_naming_the_file(record, tmp_path):
    data = write_record(record, tmp_path / "whole.json.gz").read_bytes()
    (tmp_path / "whole.json.gz").unlink()
    (tmp_path / "torn.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordError, match=r"torn\.json\.gz: not a run record"):
        load_records([tmp_path])


def test_thinning_keeps_every_kth_step_and_what_the_reports_read(record):
    long = {**record, "step_loss": [2.0 - i / 1000 for i in range(1203)], "steps_per_epoch": 401}
    long["lr"] = [[0.1 + i] for i in range(1203)]
    thin = thin_record(long, max_points=500)
    assert thin["thinned"]["stride"] == 3 and thin["thinned"]["steps"] == 1203
    assert len(thin["step_loss"]) == len(thin["lr"]) == 401 <= 500
    assert thin["step_loss"] == long["step_loss"][::3] and thin["lr"] == long["lr"][::3]
    assert curve_steps(thin, 3) == [1, 4, 7] and curve_steps(long, 3) == [1, 2, 3]
    for key in ("config", "final", "evals", "optimizer_history", "run_id"):
        assert thin[key] == long[key]
    assert check_record(thin) is thin
    # The outcome is judged as on the full curve, also for a run whose final metrics lack a train loss.
    no_train = {**long, "final": {}, "evals": []}
    thinned = thin_record(no_train, max_points=500)
    assert final_train_loss(thinned) == pytest.approx(final_train_loss(no_train))
    assert final_train_loss(no_train) == pytest.approx(math.fsum(long["step_loss"][-401:]) / 401)
    assert initial_loss(thinned) == initial_loss(no_train) and outcome(thinned) == outcome(no_train)
    # Short curves stay whole; thinning twice is thinning once.
    assert "thinned" not in thin_record(record, max_points=500)
    assert thin_record(thin, max_points=10) == thin


def test_a_record_names_the_commit_its_process_imported_not_the_one_checked_out_later(monkeypatch):
    """A sweep's worker runs the code it imported; a commit made while it runs must not relabel it."""
    from ntlr_bench import records

    imported = records.environment()["git_sha"]
    monkeypatch.setattr(records, "_git_sha", lambda: "f" * 40)  # HEAD moved on
    assert records.environment()["git_sha"] == imported
