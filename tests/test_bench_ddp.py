"""``ntlr-bench run --nproc 2``: torchrun + DDP on gloo gives the single-process run of the same batch."""

import json
import os
import subprocess
import sys

import pytest

from ntlr_bench.records import RunConfig
from ntlr_bench.runner import run


@pytest.mark.distributed
def test_two_process_ddp_run_matches_single_process(tmp_path):
    argv = [
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
        "32",
        "--set",
        "update_every=2",
        "--set",
        "rule=paper",  # K = 2 windows as set (the robust rule lengthens them past the momentum's memory)
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "ntlr_bench", *argv, "--nproc", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = (tmp_path / "single").glob("*.json")  # rank 0 alone writes the record
    ddp = json.loads(path.read_text())
    assert ddp["world_size"] == 2
    single = run(
        RunConfig(
            "digits_mlp",
            "tlr_sgd",
            0.01,
            batch_size=32,
            budget="smoke",
            overrides={"update_every": 2, "rule": "paper"},
        ),
        progress=False,
    )
    assert single["world_size"] == 1
    assert len(ddp["step_loss"]) == len(single["step_loss"])
    assert ddp["step_loss"] == pytest.approx(single["step_loss"], rel=1e-4, abs=1e-6)
    assert [h["lr"] for h in ddp["optimizer_history"]] == pytest.approx(
        [h["lr"] for h in single["optimizer_history"]], rel=1e-4
    )
    assert any(h["status"] == "updated" for h in ddp["optimizer_history"])


def test_nproc_must_be_positive(capsys):
    from ntlr_bench.cli import main

    assert main(["run", "--workload", "digits_mlp", "--optimizer", "sgd", "--lr", "0.1", "--nproc", "0"]) == 2
    assert "--nproc" in capsys.readouterr().err
