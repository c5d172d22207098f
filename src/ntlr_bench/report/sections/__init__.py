"""One report section per kind of experiment; an experiment's spec names its own (``Experiment.report``).

A section takes the experiment, its records and the report's folder, writes its figures there and returns
its Markdown lines. Sections are built from the shared pieces: ``select``/``group_by`` to pick records,
``stats`` for the numbers, ``markdown.table`` for the tables and ``figures`` for the plots.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ...records import RunRecord
from .comparison import optimizer_comparison
from .gauntlet import gauntlet
from .generic import final_numbers
from .hparams import hparam_grid, hparam_summary
from .hypergrad import hypergrad_table
from .imagenet import imagenet
from .long_horizon import long_horizon
from .robustness import batch_robustness, lr0_robustness
from .schedules import schedule_composition
from .translation import translation

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = [
    "Section",
    "batch_robustness",
    "final_numbers",
    "gauntlet",
    "hparam_grid",
    "hparam_summary",
    "hypergrad_table",
    "imagenet",
    "long_horizon",
    "lr0_robustness",
    "optimizer_comparison",
    "schedule_composition",
    "translation",
]

Section = Callable[["Experiment", list[RunRecord], Path], list[str]]
