"""What a sweep tells its user (issue 14): its thread count and where its records go, failures in its
progress and exit code, Ctrl-C as a resumable stop; and the small CLI promises (help, list, umask)."""

import os
import stat

import pytest

from ntlr_bench import sweep as sweep_module
from ntlr_bench.cli import main
from ntlr_bench.report import load_records
from ntlr_bench.sweep import default_threads

SMOKE_DEMO = ["--budget", "smoke", "--no-progress"]


# -- item 1: threads ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("environ", "threads"), [({}, 1), ({"OMP_NUM_THREADS": "3"}, 3)])
def test_the_default_thread_count_is_the_users_or_one(environ, threads):
    assert default_threads(environ) == threads


@pytest.mark.parametrize("text", ["0", "two", "-1"])
def test_a_bad_omp_num_threads_is_named(text):
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        default_threads({"OMP_NUM_THREADS": text})


@pytest.mark.parametrize(
    ("omp", "argv", "threads"), [(None, [], 1), ("1", [], 1), (None, ["--threads", "2"], 2)]
)
def test_a_sweeps_runs_use_and_record_the_users_thread_count(
    omp, argv, threads, tmp_path, monkeypatch, capsys
):
    """Before: cpu_count // workers threads whatever OMP_NUM_THREADS said (2 on a two-core machine)."""
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert main(["sweep", "demo", *SMOKE_DEMO, "--out", str(tmp_path), *argv]) == 0
    out = capsys.readouterr().out
    assert f"× {threads} torch thread(s)" in out
    records = load_records([tmp_path / "demo" / "smoke"])
    assert records and {r["environment"]["torch_threads"] for r in records} == {threads}


# -- item 4: what a sweep says -----------------------------------------------------------------------------
def test_a_sweep_says_where_its_records_go(tmp_path, capsys):
    assert main(["sweep", "demo", *SMOKE_DEMO, "--out", str(tmp_path)]) == 0
    assert f"records in {tmp_path / 'demo' / 'smoke'}" in capsys.readouterr().out


def _failing_run(*args, **kwargs):
    raise RuntimeError("no data here")


def test_failed_runs_show_in_the_progress_bar_and_the_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "_run_one", _failing_run)
    assert main(["sweep", "demo", "--budget", "smoke", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    bar = [
        line for line in captured.err.replace("\r", "\n").splitlines() if "demo:" in line and "run" in line
    ]
    assert bar and "2 failed" in bar[-1]
    assert "0 runs done, 0 already finished, 2 failed" in captured.out


def _interrupting_after(n):
    real = sweep_module._run_one
    calls = []

    def run_one(*args, **kwargs):
        calls.append(1)
        if len(calls) > n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return run_one


def test_ctrl_c_keeps_the_finished_runs_says_how_to_resume_and_exits_130(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "_run_one", _interrupting_after(1))
    argv = ["sweep", "demo", *SMOKE_DEMO, "--out", str(tmp_path)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"1 runs kept in {tmp_path / 'demo' / 'smoke'}; rerun the same command to resume" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    assert main(argv) == 0
    assert "1 already finished" in capsys.readouterr().out


def test_ctrl_c_stops_parallel_workers_too(tmp_path, monkeypatch, capsys):
    """The parent's interrupt (the workers ignore SIGINT) terminates the workers and keeps the records."""
    real = sweep_module.as_completed

    def first_then_interrupt(futures):
        yield next(iter(real(futures)))
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module, "as_completed", first_then_interrupt)
    assert main(["sweep", "demo", *SMOKE_DEMO, "--workers", "2", "--out", str(tmp_path)]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err


def test_the_demo_stops_on_ctrl_c_without_a_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "_run_one", _interrupting_after(0))
    assert main(["demo", *SMOKE_DEMO, "--out", str(tmp_path)]) == 130
    assert not (tmp_path / "demo" / "smoke" / "report").exists()


def test_report_without_records_fails_clearly(tmp_path, capsys):
    assert main(["report", "demo", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ntlr-bench: error: no records of 'demo'") and "ntlr-bench sweep demo" in err
    assert not (tmp_path / "demo").exists()


def test_report_from_a_records_folder_that_is_not_there_says_so(tmp_path, capsys):
    missing = tmp_path / "recrods"
    assert main(["report", "demo", "--records", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"ntlr-bench: error: --records {missing}: no such folder"


# -- item 6: the small things --------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_records_are_written_with_the_umask_mode(umask, tmp_path, monkeypatch):
    from ntlr_bench.records import write_record

    previous = os.umask(umask)
    try:
        path = write_record({"not": "checked here"}, tmp_path / "r.json")  # type: ignore[arg-type]
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_list_gives_the_digits_split_the_data_has(capsys):
    from ntlr_bench.data import load

    data = load("digits")
    assert main(["list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("digits "))
    assert f"{len(data.train_targets)}/{len(data.test_targets)} train/test" in line


def test_bare_ntlr_bench_prints_the_help_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: ntlr-bench") and "demo" in out and "exits with status 2" in out


@pytest.mark.parametrize("command", ["sweep", "report", "pack"])
def test_the_experiment_argument_and_seeds_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "an experiment name" in out
    if command == "sweep":
        assert "run each cell with seeds 0" in out


def test_the_readmes_demo_time_is_the_line_the_demo_prints(tmp_path, capsys):
    """The README quotes the demo's own 'demo took N s' line, not a number from elsewhere."""
    import re
    from pathlib import Path

    assert main(["demo", *SMOKE_DEMO, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    pattern = re.compile(r"demo took \d+ s")
    assert any(pattern.fullmatch(line) for line in printed)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    opening = readme[: readme.index("## Quickstart")]
    assert len(pattern.findall(opening)) >= 1


@pytest.mark.parametrize(
    ("omp", "argv", "threads"), [(None, [], 1), ("1", [], 1), (None, ["--threads", "2"], 2)]
)
def test_a_single_run_uses_and_records_the_users_thread_count(omp, argv, threads, tmp_path, monkeypatch):
    import torch

    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    previous = torch.get_num_threads()
    try:
        argv = ["run", "--workload", "digits_mlp", "--optimizer", "sgd", "--lr", "0.1", *SMOKE_DEMO, *argv]
        assert main([*argv, "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(previous)
    (record,) = load_records([tmp_path / "single"])
    assert record["environment"]["torch_threads"] == threads
