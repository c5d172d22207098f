"""The section an experiment gets when its spec names none: final numbers per workload, method and rate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...records import RunRecord
from ..markdown import lr_label, table
from ..select import final_loss, final_metric, group_by, select, values
from ..stats import fmt_ms, mean_std, n_phrase

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = ["final_numbers", "final_numbers_table"]


def final_numbers_table(records: list[RunRecord]) -> list[str]:
    """Final training loss and test accuracy per optimizer and initial rate, mean ± std over seeds."""
    groups = group_by(records, "optimizer", "lr")
    rows = [
        [
            name,
            lr_label(lr),
            fmt_ms(mean_std(final_loss(r) for r in rs)),
            fmt_ms(mean_std(100 * final_metric(r, "test_accuracy") for r in rs), 1),
        ]
        for (name, lr), rs in sorted(groups.items(), key=lambda item: (item[0][0], -item[0][1]))
    ]
    caption = f"Final training loss and test accuracy, mean ± std over {n_phrase(groups.values(), 'seed')}:"
    return [caption, "", *table(["optimizer", "α0", "final train loss", "test acc %"], rows), ""]


def final_numbers(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    lines: list[str] = []
    for workload in values(records, "workload"):
        lines += [f"### {workload}", "", *final_numbers_table(select(records, workload=workload))]
    return lines
