"""Figure plumbing the sections share: matplotlib off-screen, layouts, legends, curves, saving."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..records import RunRecord, curve_steps

__all__ = [
    "LEGEND_FONTSIZE",
    "curves",
    "epochs",
    "figure",
    "legend_below",
    "legend_right",
    "plt",
    "save",
    "smooth",
    "smoothing",
]

# Legends use the axes' own text size and sit outside the axes: inside, they hide the curves, and at the
# 6-7 pt they had, scaled down to a page's width, nobody could read them.
LEGEND_FONTSIZE = "medium"


def plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def smooth(values: list[float], window: int) -> list[float]:
    out, acc, q = [], 0.0, []
    for v in values:
        v = v if math.isfinite(v) else math.nan
        q.append(v)
        acc += v
        if len(q) > window:
            acc -= q.pop(0)
        out.append(acc / len(q))
    return out


def epochs(record: RunRecord, points: int) -> list[float]:
    """The epoch (fractional) at each of the first ``points`` points of the record's per-step curves."""
    return [s / record["steps_per_epoch"] for s in curve_steps(record, points)]


def smoothing(record: RunRecord) -> int:
    """A fifth of an epoch, in points of the record's (possibly thinned) per-step curves."""
    stride = int((record.get("thinned") or {}).get("stride", 1))
    return max(1, record["steps_per_epoch"] // 5 // stride)


def curves(
    ax_loss: Any,
    ax_lr: Any,
    records: list[RunRecord],
    label: Callable[[RunRecord], str],
    style: Callable[[RunRecord], dict[str, Any]] | None = None,
) -> None:
    """Each record's smoothed training loss on ``ax_loss`` and its rate on ``ax_lr`` (if any), per epoch."""
    for record in records:
        kwargs = style(record) if style else {}
        steps = epochs(record, len(record["step_loss"]))
        ax_loss.plot(steps, smooth(record["step_loss"], smoothing(record)), label=label(record), **kwargs)
        if ax_lr is not None and record["lr"]:
            lrs = [row[0] for row in record["lr"]]
            ax_lr.plot(epochs(record, len(lrs)), lrs, label=label(record), **kwargs)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (smoothed)")
    if ax_lr is not None:
        ax_lr.set_yscale("log")
        ax_lr.set_xlabel("epoch")
        ax_lr.set_ylabel("learning rate")


def figure(ncols: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure with ``ncols`` axes side by side, laid out so that legends outside the axes fit."""
    return plt().subplots(1, ncols, figsize=figsize, layout="constrained")


def legend_right(ax: Any) -> None:
    """The legend of ``ax`` beside it, to the right of the axes."""
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=LEGEND_FONTSIZE, frameon=False)


def legend_below(fig: Any, ax: Any, ncol: int = 4) -> None:
    """One legend under the whole figure for series that ``ax`` and its neighbours share."""
    handles, labels = ax.get_legend_handles_labels()
    if labels:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=min(ncol, len(labels)),
            fontsize=LEGEND_FONTSIZE,
            frameon=False,
        )


def save(fig: Any, out_dir: Path, name: str) -> str:
    """Write ``fig`` as ``out_dir/name`` and close it; return the name, for the Markdown beside it."""
    fig.savefig(out_dir / name, dpi=110)
    plt().close(fig)
    return name
