"""TLR under a user's schedule: the default rule from every α0 beside the inner optimizer at its best rate
under the same schedule, one column per schedule (``none``: no schedule)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from ...optimizers.schedules import SCHEDULED_INNER, Schedule
from ...records import RunRecord
from ..markdown import fmt_value, lr_label, table
from ..select import config_value, final_loss, group_by, select

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = ["SCHEDULE_COLUMNS", "schedule_composition"]

SCHEDULE_COLUMNS = ("none", *(s.value for s in Schedule))


def _scheduled(records: list[RunRecord], column: str) -> list[RunRecord]:
    wanted = None if column == "none" else column
    return [r for r in records if config_value(r, "schedule") == wanted]


def _tlr_cell(records: list[RunRecord]) -> str:
    """Median / worst final training loss over the runs (every α0 and seed); diverged runs are worst."""
    if not records:
        return "—"
    losses = [final_loss(r) for r in records]
    finite = [x for x in losses if math.isfinite(x)]
    diverged = len(losses) - len(finite)
    if not finite:
        return f"diverged ({diverged}/{len(losses)})"
    worst = "diverged" if diverged else fmt_value(max(finite))
    note = f" ({diverged}d)" if diverged else ""
    return f"{fmt_value(statistics.median(finite))} / {worst}{note}"


def _best_cell(records: list[RunRecord]) -> str:
    """The best rate's mean final training loss over seeds, and the rate."""
    means = {}
    for lr, runs in group_by(records, "lr").items():
        losses = [final_loss(r) for r in runs]
        if all(math.isfinite(x) for x in losses):
            means[lr] = statistics.fmean(losses)
    if not means:
        return "—" if not records else "diverged"
    lr = min(means, key=means.__getitem__)
    return f"{fmt_value(means[lr])} [lr={lr_label(lr)}]"


def schedule_composition(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    lines = [
        "Final training loss. TLR's default rule runs untuned: **median / worst** over every initial rate "
        "α0 (and seed) it ran from; the inner optimizer alone at its **best** rate under the same schedule "
        "(mean over seeds) [that rate]. The schedule multiplies the lr TLR's trained factor multiplies.",
        "",
    ]
    for workload, batch in sorted(group_by(records, "workload", "batch_size"), key=str):
        cell = select(records, workload=workload, batch_size=batch)
        rows = []
        for label, tlr_name, plain_name in SCHEDULED_INNER:
            tlr_runs, plain_runs = select(cell, optimizer=tlr_name), select(cell, optimizer=plain_name)
            if tlr_runs:
                rows.append(
                    [f"TLR default, {label}", *(_tlr_cell(_scheduled(tlr_runs, c)) for c in SCHEDULE_COLUMNS)]
                )
            if plain_runs:
                rows.append(
                    [
                        f"{label}, best rate",
                        *(_best_cell(_scheduled(plain_runs, c)) for c in SCHEDULE_COLUMNS),
                    ]
                )
        if rows:
            lines += [f"### {workload}, batch {batch}", "", *table(["method", *SCHEDULE_COLUMNS], rows), ""]
    return lines
