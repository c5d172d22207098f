"""Turn an experiment's run records into Markdown with the paper's figures and tables beside ours.

``write_report`` writes the parts every report shares (heading, the command that made it, provenance)
and then the section the experiment's spec names (``Experiment.report``, see ``sections``).
"""

from __future__ import annotations

from . import sections
from .command import grid_budget, report_command
from .load import load_records, read_records
from .select import config_value, final_loss, final_metric, group_by, select
from .stats import fmt_ms, mean_std
from .write import write_report

__all__ = [
    "config_value",
    "final_loss",
    "final_metric",
    "fmt_ms",
    "grid_budget",
    "group_by",
    "load_records",
    "mean_std",
    "read_records",
    "report_command",
    "sections",
    "select",
    "write_report",
]
