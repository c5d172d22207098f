"""Table 1: the first-order hypergradient rules against TLR in the same K-step framework."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ...records import RunRecord
from ..markdown import lr_label, table
from ..select import config_value, final_loss, select, values
from ..stats import fmt_ms, mean_std, n_phrase

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = ["hypergrad_table"]

# Table 1's columns: (optimizer, its η; None for TLR), in the order of the paper's ``columns``.
_COLUMNS: tuple[tuple[str, float | None], ...] = (
    ("hypergrad_add", 1e-1),
    ("hypergrad_add", 1e-2),
    ("hypergrad_mult", 1e-4),
    ("hypergrad_mult", 1e-5),
    ("tlr_sgd", None),
)


def _column(records: list[RunRecord], name: str, eta: float | None) -> list[RunRecord]:
    return select(records, optimizer=name) if eta is None else select(records, optimizer=name, eta=eta)


def hypergrad_table(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    paper = exp.paper_numbers
    rows, lowest, cells = [], [], []
    spread: dict[int, list[tuple[float, float]]] = {}  # column → (mean, std) per α0
    for lr in values(records, "lr", reverse=True):
        row = [lr_label(lr)]
        means: list[float] = []
        for name, eta in _COLUMNS:
            rs = _column(select(records, lr=lr), name, eta)
            cells.append(rs)
            stats = mean_std(final_loss(r) for r in rs)
            row.append(fmt_ms(stats, 2))
            if math.isfinite(stats[0]):
                spread.setdefault(len(means), []).append((stats[0], stats[1]))
            # A column with a diverged run is not a candidate for the row's best.
            means.append(stats[0] if stats[3] == 0 else math.nan)
        ref = paper["rows"].get(lr)
        row.append(" / ".join(f"{m:.2f}±{s:.2f}" for m, s in ref) if ref else "–")
        rows.append(row)
        finite = [i for i, m in enumerate(means) if math.isfinite(m)]
        if finite:
            ours = min(finite, key=lambda i: means[i])
            theirs = min(range(len(ref)), key=lambda i: ref[i][0]) if ref else None
            lowest.append(
                f"- α0 = {lr_label(lr)}: lowest here {paper['columns'][ours]} ({means[ours]:.2f})"
                + (f"; in the paper {paper['columns'][theirs]} ({ref[theirs][0]:.2f})" if ref else "")
            )
    n = n_phrase([c for c in cells if c], "run")
    lines = [
        f"### Final training loss, mean ± std over batch sizes (ours, {n} a cell), and the paper's Table 1",
        "",
    ]
    lines += table(["α0", *paper["columns"], "paper (same columns, CIFAR-100)"], rows)
    if lowest:
        lines += [
            "",
            "The lowest mean in each row (a column with a diverged run is not counted):",
            "",
            *lowest,
        ]
    if spread:
        lines += [
            "",
            "How much each column depends on α0 and on the batch size (the paper's point: a hypergradient "
            "rule needs its η tuned per setting):",
            "",
        ]
        for i, per_rate in sorted(spread.items()):
            lo, hi = min(m for m, _ in per_rate), max(m for m, _ in per_rate)
            lines.append(
                f"- {paper['columns'][i]}: mean {lo:.2f} … {hi:.2f} over α0, "
                f"std over batch sizes at most {max(sd for _, sd in per_rate):.2f}"
            )
    # Records from before the option ran the window sum.
    readings = sorted({str(config_value(r, "g", "sum")) for r in select(records, optimizer="hypergrad_add")})
    if readings:
        lines += [
            "",
            f"The additive rule's g: {', '.join(readings)} (\"mean\": the window's per-step mean direction, "
            "the reading under which the paper's η = 0.1 and 0.01 make sense; see "
            "`ntlr_bench/optimizers/hypergrad_window.py`).",
        ]
    return [*lines, ""]
