"""Which grid a report's records belong to, and the command that regenerates the report from them."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..budgets import BUDGETS
from ..records import RunRecord

if TYPE_CHECKING:
    from ..experiments import Experiment

__all__ = [
    "distinct_runs",
    "grid_budget",
    "of_grid",
    "planned_runs",
    "record_budgets",
    "report_budget",
    "report_command",
]


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


def distinct_runs(records: Iterable[RunRecord]) -> list[RunRecord]:
    """One record per run, the first of each kept: a record whose run id or whole config (seed and budget
    included) was already seen is the same run read twice (overlapping shards or folders, or ids written
    by another version), and would count as two seeds of its cell."""
    kept: list[RunRecord] = []
    ids: set[str] = set()
    configs: set[str] = set()
    for record in records:
        config = json.dumps(record["config"], sort_keys=True, default=repr)
        if record["run_id"] in ids or config in configs:
            continue
        ids.add(record["run_id"])
        configs.add(config)
        kept.append(record)
    return kept


def record_budgets(records: Iterable[RunRecord]) -> list[str]:
    """The budgets ``records`` ran at, smallest first."""
    found = {r["config"]["budget"] for r in records}
    return sorted(found, key=lambda b: (BUDGETS.index(b) if b in BUDGETS else len(BUDGETS), b))


def report_budget(experiment: Experiment, records: list[RunRecord], budget: str | None) -> str:
    """The grid a report of ``records`` is of: ``budget`` when given, else the smallest grid holding every
    record, else cpu for records all run at one budget. ValueError naming --budget when they ran at several
    and no one grid holds them: a cell would average runs of different lengths."""
    if budget:
        return budget
    grid = grid_budget(experiment, records)
    if grid:
        return grid
    found = record_budgets(records)
    if len(found) > 1:
        raise ValueError(
            f"--budget: the records ran at budgets {', '.join(found)} and no one grid of "
            f"{experiment.name!r} holds them all; pass {' or '.join(f'--budget {b}' for b in found)} to "
            "report the runs of one"
        )
    return "cpu"


def of_grid(
    experiment: Experiment, records: list[RunRecord], budget: str
) -> tuple[list[RunRecord], list[RunRecord]]:
    """``records`` split into those run at a budget the ``budget`` grid runs at (its own, or another its
    blocks pin) and the rest. Records all at one budget are all kept: there is no mix to average."""
    if len(record_budgets(records)) <= 1:
        return records, []
    wanted = {c.budget for c in experiment.expand(budget)}
    kept = [r for r in records if r["config"]["budget"] in wanted]
    return kept, [r for r in records if r["config"]["budget"] not in wanted]


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
