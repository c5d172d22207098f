"""Fig. 3: TLR against the adaptive and learning-rate-free peers, each over its natural knob."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ...records import RunRecord
from .. import figures
from ..markdown import table
from ..select import config_value, final_loss, final_metric, select, values
from ..stats import fmt_ms, mean_std, n_phrase

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = ["eval_curves", "optimizer_comparison"]


def _comparison_knob(record: RunRecord) -> tuple[str, float, float]:
    """The knob ``optimizer_comparison`` varied in ``record``: (name, value, the method's usual value).

    ``lr`` for most methods; ``d0`` for D-Adaptation and Prodigy, ``reps_rel`` for DoG (see
    ``experiments.comparison_knob``) when the record sets it. A record that does not (one from before those
    knobs were swept, its ``lr`` multiplier scaled instead) reads as ``lr``.
    """
    from ...experiments import _DEFAULT_LR, comparison_knob

    name = config_value(record, "optimizer")
    knob, usual = comparison_knob(name)
    if knob != "lr" and config_value(record, knob) is not None:
        return knob, float(config_value(record, knob)), usual
    return "lr", float(config_value(record, "lr")), _DEFAULT_LR.get(name, math.nan)


def _at_usual(record: RunRecord) -> bool:
    """Whether ``record`` ran its method at the usual value of its knob (and, for d0/reps_rel, at lr 1)."""
    from ...experiments import _DEFAULT_LR

    knob, value, usual = _comparison_knob(record)
    if not math.isclose(value, usual, rel_tol=1e-9):
        return False
    return knob == "lr" or math.isclose(
        config_value(record, "lr"), _DEFAULT_LR.get(config_value(record, "optimizer"), -1)
    )


def eval_curves(records: list[RunRecord], out: Path, name: str) -> str:
    """Training loss and test accuracy at each evaluation, one series per optimizer; the file name."""
    fig, (ax_loss, ax_acc) = figures.figure(2, (12, 5))
    for r in records:
        ep = [e["epoch"] for e in r["evals"]]
        label = config_value(r, "optimizer")
        ax_loss.plot(ep, [e.get("train_loss", math.nan) for e in r["evals"]], "-o", ms=3, label=label)
        ax_acc.plot(ep, [100 * e.get("test_accuracy", math.nan) for e in r["evals"]], "-o", ms=3, label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy %")
    figures.legend_below(fig, ax_acc, ncol=6)
    return figures.save(fig, out, name)


# name -> {knob value / usual value: final losses over seeds}
Series = dict[str, dict[float, list[float]]]


def _knob_series(records: list[RunRecord]) -> tuple[dict[str, str], Series]:
    """Each method's knob, and its final losses at each multiple of the knob's usual value."""
    knobs: dict[str, str] = {}
    series: Series = {}
    for r in records:
        name = config_value(r, "optimizer")
        knob, value, usual = _comparison_knob(r)
        knobs.setdefault(name, knob)
        if knob == knobs[name] and math.isfinite(value / usual):  # not for a method with no usual value
            scale = float(f"{value / usual:.6g}")
            series.setdefault(name, {}).setdefault(scale, []).append(final_loss(r))
    return knobs, series


def _sensitivity_figure(names: list[str], knobs: dict[str, str], series: Series, out: Path, file: str) -> str:
    fig, ax = figures.figure(1, (8, 4.5))
    for name in names:
        pts = sorted(series.get(name, {}).items())
        if len(pts) > 1:
            ax.plot(
                [x for x, _ in pts],
                [mean_std(v)[0] for _, v in pts],
                "-o",
                ms=3,
                label=f"{name} ({knobs[name]})",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("the method's knob / its usual value (lr; d0 or reps_rel for the lr-free peers)")
    ax.set_ylabel("final training loss")
    figures.legend_right(ax)
    return figures.save(fig, out, file)


def _methods_table(rs: list[RunRecord], names: list[str]) -> list[str]:
    rows, at_usual, every = [], [], []
    for name in names:
        mine = select(rs, optimizer=name)
        at_default = [r for r in mine if _at_usual(r)]
        at_usual.append(at_default)
        every.append(mine)
        knob, _, usual = _comparison_knob(at_default[0] if at_default else mine[0])
        rows.append(
            [
                name,
                f"{knob}={usual:g}" if math.isfinite(usual) else knob,
                fmt_ms(mean_std(final_loss(r) for r in at_default)),
                fmt_ms(mean_std(100 * final_metric(r, "test_accuracy") for r in at_default), 1),
                fmt_ms(mean_std(final_loss(r) for r in mine)),
                f"{sum(r['wall_time_s'] for r in at_default) / max(1, len(at_default)):.0f}",
            ]
        )
    header = [
        "optimizer",
        "knob (usual value)",
        f"final train loss ({n_phrase([g for g in at_usual if g], 'seed')})",
        "test acc %",
        f"train loss over the knob's values ({n_phrase(every, 'run')})",
        "wall s/run",
    ]
    return table(header, rows)


def _sensitivity_table(names: list[str], knobs: dict[str, str], series: Series) -> list[str]:
    scales = sorted({x for pts in series.values() for x in pts}, reverse=True)
    if len(scales) <= 1:
        return []
    swept = [name for name in names if len(series.get(name, {})) > 1]
    rows = [
        [name, knobs[name], *(fmt_ms(mean_std(series[name].get(x, [])), 3) for x in scales)] for name in swept
    ]
    n = n_phrase([v for name in swept for v in series[name].values()], "seed")
    lines = ["", f"Final training loss at each value of the method's knob, over its usual value ({n}):", ""]
    return lines + table(["optimizer", "knob", *(f"×{x:g}" for x in scales)], rows)


def optimizer_comparison(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    lines = []
    for workload in values(records, "workload"):
        rs = select(records, workload=workload)
        default = sorted(
            (r for r in select(rs, seed=0) if _at_usual(r)), key=lambda r: config_value(r, "optimizer")
        )
        curves = eval_curves(default, out, f"fig3_{workload}_curves.png")
        names = values(rs, "optimizer")
        knobs, series = _knob_series(rs)
        sens = None
        if any(len(pts) > 1 for pts in series.values()):  # a sensitivity plot needs several values
            sens = _sensitivity_figure(names, knobs, series, out, f"sensitivity_{workload}.png")
        lines += [
            f"### {workload}",
            "",
            *_methods_table(rs, names),
            *_sensitivity_table(names, knobs, series),
        ]
        lines += ["", f"![curves at the usual rate]({curves})", ""]
        if sens is not None:
            lines += [f"![sensitivity to the initial-rate knob]({sens})", ""]
    return lines
