"""Which grid a report's records belong to, and the command that regenerates the report from them."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..budgets import BUDGETS
from ..records import RunRecord

if TYPE_CHECKING:
    from ..experiments import Experiment

__all__ = ["grid_budget", "planned_runs", "report_command"]


def _seeds(records: list[RunRecord]) -> int:
    # A sweep's --seeds is not in its records: the grid at as many seeds as the records ran.
    return 1 + max((r["config"]["seed"] for r in records), default=0)


def planned_runs(experiment: Experiment, budget: str, records: list[RunRecord]) -> int:
    """How many runs the ``budget`` grid of ``experiment`` holds at the records' number of seeds."""
    return len(experiment.expand(budget, seeds=_seeds(records)))


def grid_budget(experiment: Experiment, records: list[RunRecord]) -> str | None:
    """The smallest budget whose grid holds every record (the gauntlet's tiers both run their workloads at
    "cpu", so the records' own budget does not tell the grid); None when no grid does."""
    ids = {r["run_id"] for r in records}
    seeds = _seeds(records)
    for budget in BUDGETS:
        if ids <= {c.run_id for c in experiment.expand(budget, seeds=seeds)}:
            return budget
    return None


def _shown(folder: str | os.PathLike[str]) -> str:
    """``folder`` relative to the working directory when it lies inside it (a committed report names no
    folder of the machine that wrote it), else as given."""
    try:
        return Path(folder).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return os.fspath(folder)


def report_command(
    experiment: str,
    budget: str,
    *,
    records: Sequence[str | os.PathLike[str]] = (),
    runs: Sequence[str | os.PathLike[str]] = (),
) -> str:
    """The ``ntlr-bench report`` command that writes the same report from the same records: the records
    read from ``records`` folders as they are, or from ``runs`` folders' ``<experiment>/<budget>``."""
    argv = ["ntlr-bench", "report", experiment, "--budget", budget]
    for folder in records:
        argv += ["--records", _shown(folder)]
    for folder in runs:
        argv += ["--runs", _shown(folder)]
    return shlex.join(argv)
