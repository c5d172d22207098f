"""A report: the experiment's heading, how it was made, provenance, and the section its spec names."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..records import RunRecord
from .command import grid_budget, planned_runs
from .provenance import provenance

if TYPE_CHECKING:
    from ..experiments import Experiment

__all__ = ["write_report"]


def _no_records(experiment: Experiment) -> list[str]:
    needs = (
        ""
        if experiment.runnable_here
        else " It needs data and GPUs this machine lacks; "
        "the spec is runnable with `ntlr-bench sweep " + experiment.name + " --budget paper`."
    )
    return ["No run records were found for this experiment." + needs, ""]


def write_report(
    experiment: Experiment,
    records: list[RunRecord],
    out_dir: str | os.PathLike,
    *,
    budget: str | None = None,
    command: str = "",
) -> Path:
    """Write ``README.md`` and figures for ``experiment`` into ``out_dir``; return the Markdown path.

    ``budget`` names the grid the records come from (default: the smallest that holds them all); a report
    whose records do not fill it says it is partial. ``command`` is printed as the one that made it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {experiment.name}: {experiment.description}", "", f"Reproduces: {experiment.paper}.", ""]
    if command:
        lines += ["Made by:", "", "```", command, "```", ""]
    if not records:
        lines += _no_records(experiment)
    else:
        grid = budget or grid_budget(experiment, records)
        lines += provenance(records, grid)
        planned = planned_runs(experiment, grid, records) if grid else None
        if grid and planned is not None and planned != len(records):
            lines.append(_coverage(experiment, grid, records, planned))
        lines.append("")
        differences = list(experiment.differences)
        if any(r["config"]["budget"] == "cpu" for r in records):
            differences = list(experiment.cpu_differences) + differences
        if differences:
            lines += ["Where this setup differs from the paper's:", ""]
            lines += [f"- {d}" for d in differences] + [""]
        lines += experiment.report(experiment, records, out)
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _coverage(experiment: Experiment, grid: str, records: list[RunRecord], planned: int) -> str:
    """The line of a report whose records do not fill its grid at their number of seeds: partial, or a
    complete one-seed grid with some cells run at more seeds (then each table states its n)."""
    ids = {r["run_id"] for r in records}
    first = {c.run_id for c in experiment.expand(grid, seeds=1)}
    seeds = max(int(r["config"]["seed"]) for r in records) + 1
    if first <= ids and seeds > 1:
        # A cell is its seed-0 run: the same config at another seed.
        more = [c for c in experiment.expand(grid, seeds=seeds) if c.seed > 0 and c.run_id in ids]
        cells = {replace(c, seed=0).run_id for c in more}
        return (
            f"- seeds: every run of the grid at seed 0 ({len(first)}); {len(cells)} of its cells also at "
            f"seeds 1–{seeds - 1} ({len(records)} runs; the tables give each cell's n)"
        )
    return f"- **partial**: {len(records)} of the grid's {planned} runs had finished"
