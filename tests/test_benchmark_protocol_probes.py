"""benchmarks/protocol_probes.py: its cells train and its arguments are checked."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from benchmark_scripts import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "protocol_probes.py"


def test_an_offset_cell_and_a_tiny_rate_cell_train() -> None:
    probes = load_benchmark("protocol_probes")
    final, opt = probes.digits_mlp_run(0.1, probes.RobustRule(), epochs=1, offset=10.0)
    assert math.isfinite(final) and final < math.log(10) and opt.get_lr()[0] > 0.0
    final, opt = probes.digits_mlp_run(1e-7, probes.RobustRule(), epochs=1, inner="Adagrad")
    assert math.isfinite(final) and opt.get_lr()[0] > 1e-7  # the survey's cell: the search climbed
    loss, rate = probes.least_squares_from("SGD", 1e-10)
    assert loss < 0.1 and rate > 1e-3


def test_epochs_below_one_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--epochs", "0"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "--epochs must be >= 1" in result.stderr
