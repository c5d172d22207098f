"""Sweeps: resumable after a SIGKILL, shards that merge to the unsharded sweep, reports from real runs."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ntlr_bench.experiments import Experiment, Grid
from ntlr_bench.report import load_records, mean_std, sections, write_report
from ntlr_bench.sweep import parse_shard, plan, record_path, sweep

TINY = Experiment(
    name="demo",
    description="four tiny digits runs",
    paper="a test",
    grids={"smoke": (Grid(("digits_mlp",), ("sgd", "tlr_sgd"), (1e-1, 1e-2)),), "paper": ()},
    report=sections.lr0_robustness,  # the demo's section
)


def _quiet(_: str) -> None:
    pass


def test_sweep_runs_everything_then_skips_finished(tmp_path):
    first = sweep(TINY, out_dir=tmp_path, budget="smoke", progress=False, log=_quiet)
    assert len(first.done) == 4 and not first.failed and not first.skipped
    again = sweep(TINY, out_dir=tmp_path, budget="smoke", progress=False, log=_quiet)
    assert not again.done and len(again.skipped) == 4


def test_shards_partition_the_grid_and_merge_to_the_unsharded_sweep(tmp_path):
    whole = {c.run_id for c in plan(TINY, budget="smoke", seeds=1)}
    parts = [{c.run_id for c in plan(TINY, budget="smoke", seeds=1, shard=(i, 3))} for i in range(3)]
    assert set().union(*parts) == whole and sum(len(p) for p in parts) == len(whole)
    for i in range(3):
        sweep(
            TINY, out_dir=tmp_path / f"machine{i}", budget="smoke", shard=(i, 3), progress=False, log=_quiet
        )
    sweep(TINY, out_dir=tmp_path / "single", budget="smoke", progress=False, log=_quiet)
    merged = load_records(tmp_path / f"machine{i}" for i in range(3))
    single = load_records([tmp_path / "single"])
    assert {r["run_id"] for r in merged} == {r["run_id"] for r in single} == whole
    # Deterministic on CPU given the seed: the sharded runs are the unsharded runs.
    by_id = {r["run_id"]: r for r in single}
    for r in merged:
        assert r["step_loss"] == by_id[r["run_id"]]["step_loss"]


TWO_WORKLOADS = Experiment(
    name="two",
    description="two workloads",
    paper="a test",
    grids={"smoke": (Grid(("digits_mlp", "lstsq_linear"), ("sgd",), (1e-1, 1e-2)),), "paper": ()},
)


def test_a_workload_filter_keeps_exactly_that_workloads_runs_of_every_shard():
    whole = plan(TWO_WORKLOADS, budget="smoke", seeds=2)
    only = plan(TWO_WORKLOADS, budget="smoke", seeds=2, workloads=["lstsq_linear"])
    assert {c.run_id for c in only} == {c.run_id for c in whole if c.workload == "lstsq_linear"}
    assert len(only) == 4
    halves = [
        plan(TWO_WORKLOADS, budget="smoke", seeds=2, shard=(i, 2), workloads=["digits_mlp"]) for i in (0, 1)
    ]
    assert sorted(c.run_id for h in halves for c in h) == sorted(
        c.run_id for c in whole if c.workload == "digits_mlp"
    )


@pytest.mark.parametrize("workloads", [["mnist_mlp"], ["digits_mlp", "nope"], []])
def test_a_workload_the_grid_does_not_run_is_a_clear_error(workloads):
    with pytest.raises(ValueError, match=r"workloads.*runs digits_mlp, lstsq_linear"):
        plan(TWO_WORKLOADS, budget="smoke", seeds=1, workloads=workloads)


def test_one_workload_name_as_a_string_is_refused():
    with pytest.raises(TypeError, match="workloads"):
        plan(TWO_WORKLOADS, budget="smoke", seeds=1, workloads="digits_mlp")


@pytest.mark.parametrize("text", ["3/3", "-1/2", "a/b", "1", "0/0"])
def test_bad_shard_is_a_clear_error(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


KILLER = textwrap.dedent(
    """
    import json, os, signal, sys
    from ntlr_bench import records
    from ntlr_bench.experiments import Experiment, Grid
    from ntlr_bench.sweep import sweep
    calls = {"n": 0}
    real_dump = json.dump
    def dump_then_die(obj, f, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            # Half a record on disk, then the process is killed outright.
            text = json.dumps(obj, **kw)
            f.write(text[: len(text) // 2]); f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_dump(obj, f, **kw)
    records.json.dump = dump_then_die
    exp = Experiment(name="demo", description="", paper="", grids={"smoke": (Grid(("digits_mlp",),
        ("sgd", "tlr_sgd"), (1e-1, 1e-2)),), "paper": ()})
    sweep(exp, out_dir=sys.argv[1], budget="smoke", progress=False)
    """
)


def test_sigkill_mid_write_leaves_no_finished_record_and_resume_completes(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == -9, proc.stderr
    folder = tmp_path / "demo" / "smoke"
    finished = sorted(folder.glob("*.json"))
    assert len(finished) == 2  # the third was being written when the process died
    for path in finished:
        json.loads(path.read_text())  # whole records only
    assert list(folder.glob(".*.tmp"))  # the torn write is there, under a name that never counts
    resumed = sweep(TINY, out_dir=tmp_path, budget="smoke", progress=False, log=_quiet)
    assert len(resumed.skipped) == 2 and len(resumed.done) == 2 and not resumed.failed
    assert len(load_records([tmp_path])) == 4


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    bad = Experiment(
        name="demo",
        description="",
        paper="",
        grids={
            "smoke": (
                Grid(("digits_mlp",), ("sgd",), (1e-1,)),
                Grid(("digits_mlp",), ("tlr_sgd",), (1e-1,), overrides=({"gamma": 5.0},)),
            ),
            "paper": (),
        },
    )
    result = sweep(bad, out_dir=tmp_path, budget="smoke", progress=False, log=_quiet)
    assert len(result.done) == 1 and len(result.failed) == 1
    assert "gamma" in next(iter(result.failed.values()))


def test_parallel_workers_match_serial(tmp_path):
    sweep(TINY, out_dir=tmp_path / "serial", budget="smoke", progress=False, threads=1, log=_quiet)
    sweep(
        TINY, out_dir=tmp_path / "parallel", budget="smoke", workers=2, progress=False, threads=1, log=_quiet
    )
    serial = {r["run_id"]: r["step_loss"] for r in load_records([tmp_path / "serial"])}
    parallel = {r["run_id"]: r["step_loss"] for r in load_records([tmp_path / "parallel"])}
    assert serial == parallel and len(serial) == 4


def test_report_renders_from_real_runs(tmp_path):
    sweep(TINY, out_dir=tmp_path, budget="smoke", progress=False, log=_quiet)
    records = load_records([tmp_path])
    path = write_report(TINY, records, tmp_path / "report", command="ntlr-bench demo")
    text = path.read_text()
    assert "ntlr-bench demo" in text and "| α0 |" in text
    for name in ("SGD train loss", "TLR-SGD"):  # the rows name the method (a TLR run's rule too)
        assert name in text
    png = tmp_path / "report" / "fig2_lr0_robustness.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_record_path_is_inside_the_experiment_and_budget_folder(tmp_path):
    config = plan(TINY, budget="smoke", seeds=1)[0]
    assert (
        record_path(tmp_path, "demo", "smoke", config)
        == tmp_path / "demo" / "smoke" / f"{config.run_id}.json"
    )


def test_mean_std_counts_nonfinite_separately():
    mean, std, n, bad = mean_std([1.0, 3.0, float("nan")])
    assert (mean, std, n, bad) == (2.0, 1.0, 2, 1)
    assert Path  # keep import used for type of paths above
