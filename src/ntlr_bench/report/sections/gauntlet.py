"""The gauntlet (beyond the paper): every rule untuned beside every peer at its best cell, as a scoreboard."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ...records import RunRecord
from .. import figures
from ..markdown import fmt_value, table

if TYPE_CHECKING:
    from ...experiments import Experiment
    from ...scoreboard import Scoreboard

__all__ = ["gauntlet"]


def _intro(board: Scoreboard, worst_ratio: float) -> list[str]:
    # What a median is over is read from the records: the tiers run different α0 and inner optimizers.
    alpha0 = ", ".join(f"{a:g}" for a in sorted(board.alpha0, reverse=True))
    inner = "; ".join(sorted(board.inner))
    return [
        "## Scoreboard",
        "",
        "Final training loss (least squares: excess over the known optimum), lower is better. A TLR rule "
        f"runs untuned: its **median / worst** cell over every initial rate α0 ∈ {{{alpha0}}} and inner "
        f"optimizer run ({inner}; not every pair on every workload), then `d` diverged and `s` stalled "
        "runs. A peer is shown at its **best** cell over its own knob (the value in brackets) and, on the "
        "row below, at its package's **default** (untuned against untuned; `experiments.PEER_DEFAULTS`); "
        "a peer with settings in parentheses ran at those instead of the gauntlet's own for it. ✓: the "
        "rule meets the default's target there (no "
        f"divergence or stall, median ≤ the best peer's best, worst ≤ {worst_ratio}× it).",
        "",
    ]


def _scoreboard_table(board: Scoreboard) -> list[str]:
    keys = board.workloads
    header = ["method", *[str(k) for k in keys]]
    rows: list[list[str]] = []
    for rule in board.rules():
        row = [f"**{rule}**"]
        for key in keys:
            entry = board.scores[key].get(rule)
            if entry is None:
                row.append("")
                continue
            mark = " ✓" if board.meets_target(key, rule) else ""
            row.append(
                f"{fmt_value(entry.median)} / {fmt_value(entry.worst)} "
                f"({entry.diverged}d {entry.stalled}s){mark}"
            )
        rows.append(row)
    best_row = ["best peer"]
    for key in keys:
        best = board.best_peer(key)
        best_row.append("" if best is None else f"{fmt_value(best[0])} ({best[1]})")
    rows.append(best_row)
    default_row = ["best peer at default"]
    for key in keys:
        best = board.best_default_peer(key)
        default_row.append("" if best is None else f"{fmt_value(best[0])} ({best[1]})")
    rows.append(default_row)
    for peer in board.peers():
        row = [peer]
        for key in keys:
            entry = board.scores[key].get(peer)
            if entry is None:
                row.append("")
                continue
            value, knob = entry.best
            row.append(f"{fmt_value(value)} [{knob}] ({entry.diverged}d)")
        rows.append(row)
        cells = [board.at_default(key, peer) for key in keys]
        defaults = ("" if c is None else f"{fmt_value(c[0])} [{c[1]}]" for c in cells)
        rows.append([f"{peer} at default", *defaults])
    return [*table(header, rows), ""]


def _by_inner_table(board: Scoreboard) -> list[str]:
    keys = board.workloads
    header = ["method", *[str(k) for k in keys]]
    detail = sorted({m for by in board.scores.values() for m, s in by.items() if s.is_rule and " " in m})
    rows = []
    for method in detail:
        row = [method]
        for key in keys:
            entry = board.scores[key].get(method)
            row.append(
                ""
                if entry is None
                else f"{fmt_value(entry.median)} / {fmt_value(entry.worst)} "
                f"({entry.diverged}d {entry.stalled}s)"
            )
        rows.append(row)
    return [
        "## Each rule by inner optimizer (median / worst over α0, diverged, stalled)",
        "",
        *table(header, rows),
        "",
    ]


def _scoreboard_figure(board: Scoreboard, out: Path) -> str:
    keys = board.workloads
    # At most four panels a row: a report page is narrow.
    ncols = min(4, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = figures.plt().subplots(
        nrows, ncols, figsize=(3.6 * ncols, 4.4 * nrows), layout="constrained", squeeze=False
    )
    for ax in axes.flat[len(keys) :]:
        ax.set_visible(False)
    methods = [*board.rules(), *board.peers()]
    for ax, key in zip(axes.flat, keys):
        best = board.best_peer(key)
        for x, method in enumerate(methods):
            entry = board.scores[key].get(method)
            if entry is None:
                continue
            values = list(entry.values().values())
            finite = [v for v in values if math.isfinite(v)]
            color = "tab:red" if entry.is_rule else "tab:gray"
            ax.scatter([x] * len(finite), finite, s=10, alpha=0.5, color=color)
            if len(finite) < len(values):
                ax.scatter([x], [ax.get_ylim()[1] if finite else 1.0], marker="x", color="black")
            if entry.is_rule:
                ax.scatter([x], [entry.median], marker="_", s=300, color="tab:red")
            elif math.isfinite(entry.best[0]):
                ax.scatter([x], [entry.best[0]], marker="o", s=40, color="tab:blue")
        if best is not None and math.isfinite(best[0]):
            ax.axhline(best[0], color="tab:blue", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(str(key), fontsize="medium")
        ax.set_xticks(range(len(methods)), methods, rotation=90, fontsize="small")
    for row in axes:
        row[0].set_ylabel("final training loss (lstsq: excess)")
    fig.suptitle(
        "rules (red: every cell, bar = median) vs peers (grey: every cell, blue = best); "
        "dashed: best peer; x: diverged",
        fontsize="medium",
    )
    return figures.save(fig, out, "gauntlet_scoreboard.png")


def gauntlet(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    from ...scoreboard import WORST_RATIO, score

    board = score(records)
    lines = [*_intro(board, WORST_RATIO), *_scoreboard_table(board), *_by_inner_table(board)]
    return [*lines, f"![scoreboard]({_scoreboard_figure(board, out)})", ""]
