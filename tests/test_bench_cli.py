"""The CLI end to end on the embedded default data set."""

import json
import os
import subprocess
import sys

import pytest

from ntlr_bench.cli import main


def test_list_names_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "digits_mlp",
        "mnist_mlp",
        "cifar10_wrn16_4",
        "translation_transformer",
        "tlr_sgd",
        "hypergrad_add",
        "sls",
        "sps",
        "prodigy",
        "hparam_grid",
        "lr0_robustness",
    ):
        assert name in out


def test_list_says_what_each_budget_means_and_how_long_each_workload_runs_at_it(capsys):
    from ntlr_bench.budgets import BUDGET_MEANINGS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {budget:26s} {meaning}" in out for budget, meaning in BUDGET_MEANINGS.items())
    assert "MNIST (the paper's MNIST setting) (1 of 512 / 3 / 20 / 60)" in out  # smoke / cpu / paper / long


def test_run_writes_a_self_describing_record(tmp_path, capsys):
    code = main(
        [
            "run",
            "--workload",
            "digits_mlp",
            "--optimizer",
            "tlr_sgd",
            "--lr",
            "0.01",
            "--budget",
            "smoke",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--set",
            "gamma=0.5",
        ]
    )
    assert code == 0
    (path,) = (tmp_path / "single").glob("*.json")
    record = json.loads(path.read_text())
    assert record["config"]["overrides"] == {"gamma": 0.5}
    assert record["environment"]["torch"] and record["environment"]["ntlr"]
    # The processor: a run's last digits depend on it (records.environment).
    assert record["environment"]["cpu"] and "cpu_capability" in record["environment"]
    assert record["environment"]["git_dirty"] in (True, False, None)
    assert len(record["step_loss"]) == record["total_steps"] == len(record["lr"])
    assert record["evals"] and {"train_loss", "test_loss", "test_accuracy"} <= set(record["final"])
    assert isinstance(record["optimizer_history"], list)
    assert record["diverged"] is False and record["wall_time_s"] > 0


def test_the_loss_guard_is_reachable_from_the_cli(tmp_path, monkeypatch):
    from ntlr import TLR

    observed = []
    real = TLR.observe_loss
    monkeypatch.setattr(
        TLR, "observe_loss", lambda self, loss: (observed.append(float(loss)), real(self, loss))
    )
    code = main(
        [
            "run",
            "--workload",
            "digits_mlp",
            "--optimizer",
            "tlr_sgd",
            "--lr",
            "0.01",
            "--budget",
            "smoke",
            "--batch-size",
            "16",
            "--set",
            "loss_guard=true",
            "--set",
            "update_every=2",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    (path,) = (tmp_path / "single").glob("*.json")
    record = json.loads(path.read_text())
    assert record["optimizer"]["settings"]["loss_guard"] is True
    # The runner fed the guard every step's loss, the same value it recorded.
    assert observed == pytest.approx(record["step_loss"])


def test_divergence_is_recorded_not_raised(tmp_path, capsys):
    code = main(
        [
            "run",
            "--workload",
            "digits_mlp",
            "--optimizer",
            "sgd",
            "--lr",
            "1e6",
            "--budget",
            "smoke",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    (path,) = (tmp_path / "single").glob("*.json")
    record = json.loads(path.read_text())
    assert record["diverged"] is True and 1 <= record["diverged_at_step"] <= len(record["step_loss"])
    assert "DIVERGED" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["run", "--workload", "nope", "--optimizer", "sgd", "--lr", "0.1"], "workload"),
        (["run", "--workload", "digits_mlp", "--optimizer", "nope", "--lr", "0.1"], "nope"),
        (["run", "--workload", "digits_mlp", "--optimizer", "sgd", "--lr", "-1"], "lr"),
        (
            ["run", "--workload", "digits_mlp", "--optimizer", "sgd", "--lr", "0.1", "--batch-size", "0"],
            "batch_size",
        ),
        (["run", "--workload", "digits_mlp", "--optimizer", "sgd", "--lr", "0.1", "--set", "oops"], "--set"),
        (["sweep", "demo", "--shard", "5/2"], "shard"),
        (["sweep", "nope"], "experiment"),
    ],
)
def test_bad_input_is_one_clear_line(argv, needle, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)] if argv[0] != "report" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ntlr-bench: error:") and needle in err


def test_console_script_and_demo(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ntlr_bench",
            "demo",
            "--budget",
            "smoke",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "demo" / "smoke" / "report" / "README.md"
    assert report.is_file() and "TLR-SGD train loss" in report.read_text()


def test_a_bug_keeps_its_traceback_while_bad_input_stays_one_line(monkeypatch, capsys):
    import ntlr_bench.cli as cli

    def buggy(args):
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(cli, "_cmd_list", buggy)
    with pytest.raises(TypeError, match="unsupported operand"):
        cli.main(["list"])
    assert cli.main(["sweep", "nope"]) == 2
    assert capsys.readouterr().err.startswith("ntlr-bench: error:")


# -- a new user's audit: --device, --set, a smoke run's verdict ---------------------------------------------
DEVICE_ARGV = {
    "run": ["run", "--workload", "digits_logreg", "--optimizer", "sgd", "--lr", "0.1"],
    "sweep": ["sweep", "demo"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("command", sorted(DEVICE_ARGV))
def test_cuda_on_a_torch_without_it_is_one_line_before_anything_runs(command, tmp_path, monkeypatch, capsys):
    """Before: a 31-line traceback ending in 'Torch not compiled with CUDA enabled'."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [*DEVICE_ARGV[command], "--budget", "smoke", "--no-progress", "--out", str(tmp_path)]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ntlr-bench: error: --device: CUDA is not available") and err.count("\n") == 1
    assert "use --device cpu or auto" in err
    assert not any(tmp_path.iterdir())  # nothing ran


@pytest.mark.parametrize("command", sorted(DEVICE_ARGV))
def test_a_cuda_index_past_the_devices_is_named(command, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    argv = [*DEVICE_ARGV[command], "--budget", "smoke", "--no-progress", "--out", str(tmp_path)]
    assert main([*argv, "--device", "cuda:3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ntlr-bench: error: --device: cuda:3 is out of range") and "1 CUDA device" in err


def test_a_bad_set_value_names_only_its_key_and_what_it_expected(tmp_path, capsys):
    """Before: 'cannot take the setting(s) rule='paper', momentum='abc': '<' not supported ...'."""
    argv = [*DEVICE_ARGV["run"][:4], "tlr_sgd", "--lr", "0.1", "--budget", "smoke", "--no-progress"]
    assert main([*argv, "--set", "rule=paper", "--set", "momentum=abc", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "ntlr-bench: error: --set momentum='abc': expected a number (the optimizer's default is 0.8)\n"
    )


def test_a_bad_setting_without_a_known_default_is_found_by_trying_each_alone():
    """rule's default is not in the optimizer's defaults: the settings are built one at a time."""
    import torch

    from ntlr_bench.optimizers import build_optimizer

    params = [torch.zeros(1, requires_grad=True)]
    with pytest.raises(ValueError) as caught:
        build_optimizer("tlr_sgd", params, lr=0.1, steps_per_epoch=10, total_steps=100, p=0.2, rule=5)
    message = str(caught.value)
    assert message.startswith("--set rule=5: optimizer 'tlr_sgd' cannot take it: ")
    assert "p=" not in message


def _stalled(train_loss):
    return {
        "diverged": False,
        "final": {"train_loss": train_loss},
        "evals": [{"step": 0, "train_loss": 2.327}],
    }


def test_a_smoke_run_is_not_called_stalled():
    from ntlr_bench.cli import _verdict

    assert _verdict(_stalled(1.665), "smoke") == (
        "finished (smoke budget: a plumbing check, not a convergence test; final training loss 1.665, "
        "initial 2.327)"
    )
    assert (
        _verdict(_stalled(1.665), "cpu") == "finished but STALLED (final training loss 1.665, initial 2.327)"
    )
    assert _verdict(_stalled(0.1), "smoke") == "finished"
    diverged = {**_stalled(1.0), "diverged": True, "diverged_at_step": 7}
    assert _verdict(diverged, "smoke") == "DIVERGED at step 7"  # a non-finite loss is a fault at any budget


@pytest.mark.parametrize("option", ["--out", "--runs"])
def test_run_and_sweep_take_the_records_folder_under_either_name(option, tmp_path):
    # report and pack read the records folder as --runs: the commands that write it take that name too.
    argv = ["run", "--workload", "digits_logreg", "--optimizer", "sgd", "--lr", "0.1", "--budget", "smoke"]
    assert main([*argv, option, str(tmp_path), "--no-progress"]) == 0
    assert list((tmp_path / "single").glob("*.json"))
