"""The budgets a workload runs under and an experiment's grid is chosen by, smallest first."""

from __future__ import annotations

__all__ = ["BUDGETS"]

# A module of its own so that the command line and the experiment specs name them without importing torch.
BUDGETS: tuple[str, ...] = ("smoke", "cpu", "paper")
