"""Progress bars draw on a terminal and leave a log file (or CI's output) alone."""

import io

import pytest

from ntlr_bench.experiments import Experiment, Grid
from ntlr_bench.progress import progress_bar
from ntlr_bench.records import RunConfig
from ntlr_bench.runner import run
from ntlr_bench.sweep import sweep

pytest.importorskip("tqdm")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_draws_on_a_terminal_only():
    terminal = Terminal()
    bar = progress_bar(10, desc="x", unit="step", file=terminal)
    assert bar is not None
    bar.update(5)
    bar.close()
    assert "5/10" in terminal.getvalue()
    assert progress_bar(10, desc="x", unit="step", file=io.StringIO()) is None


def test_off_a_terminal_a_quiet_bar_refreshes_rarely():
    log = io.StringIO()
    bar = progress_bar(500, desc="sweep", unit="run", quiet_interval_s=3600, file=log)
    for _ in range(500):
        bar.update(1)
    bar.close()
    assert log.getvalue().count("\r") <= 3  # drawn at the start and the end, not 500 times


def test_a_run_with_progress_writes_no_bar_to_a_log(capfd):
    # pytest's captured stderr is a file, as a log or CI's output is.
    run(RunConfig("digits_mlp", "sgd", 0.1, batch_size=16, budget="smoke"), progress=True)
    err = capfd.readouterr().err
    assert "step/s" not in err and "s/step" not in err and "\r" not in err


def test_a_sweep_with_progress_writes_few_lines_to_a_log(tmp_path, capfd):
    exp = Experiment("demo", "", "", {"smoke": (Grid(("digits_mlp",), ("sgd",), (0.1, 0.01)),), "paper": ()})
    sweep(exp, out_dir=tmp_path, budget="smoke", progress=True, log=lambda _: None)
    err = capfd.readouterr().err
    assert "step/s" not in err and "s/step" not in err  # no run's bar
    assert err.count("\r") + err.count("\n") <= 4  # the sweep's bar: drawn at its start and end
