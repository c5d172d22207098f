"""Fig. 5: the Seq2Seq Transformer, German→English."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ...records import RunRecord
from .. import figures
from ..markdown import table
from ..select import config_value, final_loss, final_metric

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = ["translation"]


def _label(record: RunRecord) -> str:
    return f"{config_value(record, 'optimizer')} lr={config_value(record, 'lr'):g}"


def _runs_table(records: list[RunRecord]) -> list[str]:
    rows = []
    for r in records:
        best = min((e.get("test_loss", math.inf) for e in r["evals"]), default=math.nan)
        rows.append(
            [
                _label(r),
                f"{final_loss(r):.3f}",
                f"{final_metric(r, 'test_loss'):.3f}",
                f"{best:.3f}",
                f"{final_metric(r, 'bleu'):.2f}",
                f"{r['wall_time_s']:.0f}",
            ]
        )
    return table(["run", "final train loss", "final valid loss", "best valid loss", "BLEU", "wall s"], rows)


def _fig5_losses(records: list[RunRecord], out: Path) -> str:
    fig, (ax_train, ax_valid) = figures.figure(2, (12, 5))
    for r in records:
        ax_train.plot(
            figures.epochs(r, len(r["step_loss"])),
            figures.smooth(r["step_loss"], figures.smoothing(r)),
            label=_label(r),
        )
        ax_valid.plot(
            [e["epoch"] for e in r["evals"]],
            [e.get("test_loss", math.nan) for e in r["evals"]],
            "-o",
            ms=3,
            label=_label(r),
        )
    for ax, what in ((ax_train, "training loss (smoothed)"), (ax_valid, "validation loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
    figures.legend_below(fig, ax_valid, ncol=3)
    return figures.save(fig, out, "fig5_translation.png")


def translation(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    records = sorted(records, key=lambda r: config_value(r, "optimizer"))
    name = _fig5_losses(records, out)
    return [*_runs_table(records), "", f"![Fig. 5 reproduced: train and validation loss]({name})", ""]
