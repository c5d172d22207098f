"""benchmarks/spike_sizes.py: each rolled-back window's rise over the last kept one, and its refusal of a
record whose per-step losses were thinned."""

from __future__ import annotations

import math
from types import ModuleType

import pytest

from benchmark_scripts import load_benchmark


def _load() -> ModuleType:
    return load_benchmark("spike_sizes")


def _record(losses: list[float], history: list[dict]) -> dict:
    return {
        "run_id": "r",
        "step_loss": losses,
        "total_steps": len(losses),
        "steps_per_epoch": 4,
        "optimizer_history": history,
    }


def test_a_rolled_back_windows_rise_against_the_last_kept_one() -> None:
    spikes = _load().spikes
    # Windows of 4 steps: kept (mean 1.0, steps alternating 0.9 / 1.1), rolled back (mean 1.3), and a
    # rollback in the first epoch, which is left out.
    kept = [0.9, 1.1, 0.9, 1.1]
    losses = [2.0, 2.0, 2.0, 2.0, *kept, 1.2, 1.4, 1.2, 1.4]
    history = [
        {"step": 4, "window_steps": 4, "status": "rollback"},
        {"step": 8, "window_steps": 4, "status": "updated"},
        {"step": 12, "window_steps": 4, "status": "rollback"},
    ]
    ((epoch, relative, z),) = spikes(_record(losses, history), 1.0)
    assert epoch == 3.0 and relative == pytest.approx(0.3)
    # The kept window's standard error from successive differences: mssd 0.04 / 2, over 4 steps.
    assert z == pytest.approx(0.3 / math.sqrt(2.0 * 0.02 / 4))


def test_thinned_losses_are_refused() -> None:
    record = _record([1.0, 1.0], [])
    record["total_steps"] = 100
    with pytest.raises(SystemExit, match="thinned"):
        _load().spikes(record, 1.0)
