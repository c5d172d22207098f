"""The budgets a workload runs under and an experiment's grid is chosen by, smallest first."""

from __future__ import annotations

__all__ = ["BUDGETS", "BUDGET_MEANINGS", "LONG_OVER_PAPER"]

# A module of its own so that the command line and the experiment specs name them without importing torch.
BUDGETS: tuple[str, ...] = ("smoke", "cpu", "paper", "long")

# What each is for, as `ntlr-bench list` says it (each workload's epochs and data limits are its own).
BUDGET_MEANINGS: dict[str, str] = {
    "smoke": "a step or two on a slice of the data: a plumbing check, not a convergence test",
    "cpu": "minutes a run on a CPU: enough to compare optimizers (the committed reports' runs)",
    "paper": "the paper's epochs on the whole data: hours a run on a CPU, a GPU for the image and "
    "translation workloads",
    "long": "three times the paper's epochs (a workload that names no long budget of its own): whether a "
    "rule holds beyond the budget it was judged at",
}

# The long budget's length over the paper's, where a workload does not set its own.
LONG_OVER_PAPER = 3
