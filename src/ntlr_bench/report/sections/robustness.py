"""Robustness to the initial rate (Fig. 2, and the demo on digits) and to the batch size (Section 3).

Each experiment's rows are methods, not just optimizers: SGD, TLR-SGD with the paper's rule (its p and γ
pinned) and TLR-SGD with the library's default rule (its own p and γ), told apart by the rule a run's
config names (``method``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...records import RunRecord
from .. import figures
from ..markdown import lr_label, table
from ..select import config_value, final_loss, final_metric, group_by, select, values
from ..stats import Stats, fmt_ms, mean_std, n_phrase, over_rates

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = [
    "DEFAULT_RULE",
    "PAPER_RULE",
    "SGD",
    "batch_robustness",
    "by_lr_table",
    "lr0_robustness",
    "method",
    "method_rows",
    "seeds_phrase",
]

SGD = "SGD"
PAPER_RULE = "TLR-SGD (paper's rule)"
DEFAULT_RULE = "TLR-SGD (default rule)"
TLR = "TLR-SGD"  # a TLR-SGD record that names no rule (made before the grids named one)
# scoreboard.tlr_method's names of the rules these grids run: "paper" (pinned with the paper's p and γ)
# and "robust", the library's default, named in the grid so that a record says what it ran.
_RULES = {"TLR-paper": PAPER_RULE, "TLR-robust": DEFAULT_RULE, "TLR-default": TLR}
_ORDER = (SGD, PAPER_RULE, DEFAULT_RULE, TLR)
# How each row is drawn, and its short name in a legend.
_STYLE = {
    SGD: (":", "o", "SGD"),
    PAPER_RULE: ("-", "o", "TLR paper"),
    DEFAULT_RULE: ("--", "s", "TLR default"),
}
_LINESTYLE_WORD = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dotted"}
_PAPER_KEY = {SGD: "sgd_lr0.1", PAPER_RULE: "tlr_lr0.1", TLR: "tlr_lr0.1"}

Rows = list[tuple[str, list[RunRecord]]]


def _style(label: str) -> tuple[str, str, str]:
    """A row's line style, marker and short name in a legend."""
    return _STYLE.get(label, ("-" if label == TLR else "-.", "o", "TLR" if label == TLR else label))


def method(record: RunRecord) -> str:
    """The row a run of these experiments belongs to: SGD, or TLR-SGD named by its rule."""
    from ...scoreboard import tlr_method  # the scoreboard's own name for a TLR run's rule

    optimizer = config_value(record, "optimizer")
    if optimizer != "tlr_sgd":
        return SGD if optimizer == "sgd" else str(optimizer)
    name = tlr_method(record["config"])
    return _RULES.get(name, f"TLR-SGD ({name.removeprefix('TLR-')} rule)")


def method_rows(records: list[RunRecord]) -> Rows:
    """The SGD and TLR-SGD ``records`` (the others are not these experiments') grouped by ``method``: SGD,
    the paper's rule, the default rule, then any other rule."""
    groups = group_by_method([r for r in records if config_value(r, "optimizer") in ("sgd", "tlr_sgd")])
    rank = {name: i for i, name in enumerate(_ORDER)}
    return sorted(groups.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def group_by_method(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(method(r), []).append(r)
    return groups


def seeds_phrase(records: list[RunRecord], *keys: str) -> str:
    """How many seeds each cell of ``keys`` averages: "n = 3 seeds"."""
    return n_phrase(group_by(records, *keys).values(), "seed")


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def rows_seeds_phrase(rows: Rows, *keys: str) -> str:
    """``seeds_phrase`` per row: "n = 3 seeds" when every row has as many, else which row has how many
    ("n = 3 seeds for SGD and TLR-SGD (paper's rule), n = 1 seed for TLR-SGD (default rule)")."""
    labels_by_phrase: dict[str, list[str]] = {}
    for label, rs in rows:
        labels_by_phrase.setdefault(seeds_phrase(rs, *keys), []).append(label)
    if len(labels_by_phrase) <= 1:
        return next(iter(labels_by_phrase), n_phrase([], "seed"))
    return ", ".join(f"{phrase} for {_and(labels)}" for phrase, labels in labels_by_phrase.items())


def _loss(stats: Stats) -> str:
    """``fmt_ms`` of a final loss; a single run's with at least three significant digits (as a spread's
    mean gets them), so that a one-seed row reads as precisely as the rows beside it."""
    mean, _, n, _ = stats
    if n != 1 or not math.isfinite(mean) or mean == 0:
        return fmt_ms(stats)
    return fmt_ms(stats, max(3, 2 - math.floor(math.log10(abs(mean)))))


def _by_lr(records: list[RunRecord], rows: Rows, loss: Callable[[Stats], str] = fmt_ms) -> list[str]:
    lines = []
    for lr in values(records, "lr", reverse=True):
        row = [lr_label(lr)]
        for _, rs in rows:
            at = select(rs, lr=lr)
            row.append(loss(mean_std(final_loss(r) for r in at)))
            row.append(fmt_ms(mean_std(100 * final_metric(r, "test_accuracy") for r in at), 1))
        lines.append(row)
    header = ["α0"] + [f"{label} {what}" for label, _ in rows for what in ("train loss", "test acc %")]
    return table(header, lines)


def by_lr_table(records: list[RunRecord], optimizers: tuple[str, ...]) -> list[str]:
    """Final training loss and test accuracy per initial rate (rows) and optimizer, over seeds."""
    return _by_lr(records, [(name, select(records, optimizer=name)) for name in optimizers])


def _paper_lr0_rows(rows: Rows, paper: dict[str, Any]) -> list[str]:
    at_01 = [(label, select(rs, lr=0.1)) for label, rs in rows if label in _PAPER_KEY]
    lines = []
    for label, ours in at_01:
        key = _PAPER_KEY[label]
        lines.append(
            [
                label,
                _loss(mean_std(final_loss(r) for r in ours)),
                fmt_ms(mean_std(100 * final_metric(r, "test_accuracy") for r in ours), 1),
                f"{paper[key]['loss']:.3f}",
                f"{100 * paper[key]['accuracy']:.1f}",
            ]
        )
    n = rows_seeds_phrase(at_01)
    out = [f"α0 = 0.1 beside the paper's numbers (ours: mean ± std over {n}):", ""]
    out += table(["", "loss (ours)", "acc % (ours)", "loss (paper)", "acc % (paper)"], lines)
    return [*out, ""]


def _ratio(ratio: float) -> str:
    return f"{ratio:.3f}×" if math.isfinite(ratio) else "∞ (diverged)"


def _default_vs_paper(
    cells: dict[Any, dict[str, list[RunRecord]]], cell_name: Callable[[Any], str], what: str
) -> list[str]:
    """The default rule against the paper's rule in each cell both ran: how many cells it ends at or below
    it in (its mean over its seeds against the paper's rule's mean over its own), the worst ratio, and the
    cells above; and seed for seed where the two ran different seeds."""
    both = {k: c for k, c in cells.items() if c.get(DEFAULT_RULE) and c.get(PAPER_RULE)}
    if not both:
        return []

    def at_or_below(ours: float, theirs: float) -> bool:
        return math.isfinite(ours) and (not math.isfinite(theirs) or ours <= theirs)

    met, same_seed_met, same_seeds_differ, above = 0, 0, False, []
    worst: tuple[float, Any] = (-math.inf, None)
    for key, c in both.items():
        ours, theirs = mean_std(map(final_loss, c[DEFAULT_RULE])), mean_std(map(final_loss, c[PAPER_RULE]))
        seeds = {config_value(r, "seed") for r in c[DEFAULT_RULE]}
        paired = [r for r in c[PAPER_RULE] if config_value(r, "seed") in seeds]
        same_seeds_differ |= len(paired) != len(c[PAPER_RULE])
        if paired and at_or_below(ours[0], mean_std(map(final_loss, paired))[0]):
            same_seed_met += 1
        if at_or_below(ours[0], theirs[0]):
            met += 1
        if math.isfinite(theirs[0]) and theirs[0] > 0:
            ratio = ours[0] / theirs[0] if math.isfinite(ours[0]) else math.inf
            worst = max(worst, (ratio, key), key=lambda w: w[0])
            if not at_or_below(ours[0], theirs[0]):
                above.append(f"{cell_name(key)} ({_loss(ours)} against {_loss(theirs)}, {_ratio(ratio)})")
    n_ours = n_phrase([c[DEFAULT_RULE] for c in both.values()], "seed")
    n_theirs = n_phrase([c[PAPER_RULE] for c in both.values()], "seed")
    count = f"all {met}" if met == len(both) else f"{met} of {len(both)}"
    line = (
        f"- The default rule ends at or below the paper's rule in {count} {what} cells "
        f"(the mean of its {n_ours} against the mean of the paper's rule's {n_theirs})"
    )
    if worst[1] is not None:
        line += (
            f"; the worst ratio, default over paper's rule, is {_ratio(worst[0])} at {cell_name(worst[1])}"
        )
    lines = [line + "."]
    if above:
        lines.append(f"- Above the paper's rule at: {'; '.join(above)}.")
    if same_seeds_differ:
        lines.append(
            f"- Seed for seed (against the paper's rule's runs of the same seeds only): at or below in "
            f"{same_seed_met} of {len(both)}."
        )
    return lines


def _fig2_curves(records: list[RunRecord], rows: Rows, out: Path) -> list[str]:
    """Fig. 2: loss and rate of the first seed's runs, one colour per α0, one line style per method."""
    fig, (ax_loss, ax_lr) = figures.figure(2, (12, 7))
    lrs = values(records, "lr", reverse=True)
    cmap = figures.plt().get_cmap("viridis")
    color = {lr: cmap(i / max(1, len(lrs) - 1)) for i, lr in enumerate(lrs)}
    rank = {label: i for i, (label, _) in enumerate(rows)}
    chosen = sorted(select(records, seed=0), key=lambda r: (rank[method(r)], -config_value(r, "lr")))

    figures.curves(
        ax_loss,
        ax_lr,
        chosen,
        label=lambda r: f"{_style(method(r))[2]} α0={lr_label(config_value(r, 'lr'))}",
        style=lambda r: {"color": color[config_value(r, "lr")], "linestyle": _style(method(r))[0]},
    )
    # One column per method (the legend fills its columns top to bottom).
    figures.legend_below(fig, ax_lr, ncol=max(1, len({method(r) for r in chosen})))
    name = figures.save(fig, out, "fig2_lr0_robustness.png")
    drawn = [label for label, _ in rows if any(method(r) == label for r in chosen)]
    how = ", ".join(f"{label} {_LINESTYLE_WORD[_style(label)[0]]}" for label in drawn)
    return [f"![Fig. 2 reproduced: loss and learning rate (seed 0), {how}]({name})", ""]


def lr0_robustness(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    rows = method_rows(records)
    records = [r for _, rs in rows for r in rs]
    n = rows_seeds_phrase(rows, "lr")
    lines = [f"### Final training loss and test accuracy per initial rate, mean ± std over {n}", ""]
    lines += _by_lr(records, rows, _loss)
    summary = ", ".join(f"{label} {_loss(mean_std(final_loss(r) for r in rs))}" for label, rs in rows)
    lines += ["", f"Over all initial rates: {summary}.", ""]
    cells = {lr: group_by_method(rs) for lr, rs in group_by(records, "lr").items()}
    target = _default_vs_paper(
        dict(sorted(cells.items(), reverse=True)), lambda lr: f"α0 = {lr_label(lr)}", "α0"
    )
    if target:
        lines += [*target, ""]
    if exp.paper_numbers:
        lines += _paper_lr0_rows(rows, exp.paper_numbers)
    return [*lines, "", *_fig2_curves(records, rows, out)]


def _final_losses(records: list[RunRecord]) -> list[float]:
    return [final_loss(r) for r in records]


def _batch_figure(
    cell: dict[Any, list[float]], labels: list[str], sizes: list[int], lrs: list[float], out: Path
) -> str:
    fig, ax = figures.figure(1, (10, 4.5))
    color = {lr: f"C{i}" for i, lr in enumerate(lrs)}
    for label in labels:
        line, marker, _ = _style(label)
        for lr in lrs:
            pts = [(bs, mean_std(cell[(label, bs, lr)])[0]) for bs in sizes if (label, bs, lr) in cell]
            if pts:
                ax.plot(
                    *zip(*pts),
                    linestyle=line,
                    marker=marker,
                    color=color[lr],
                    label=f"{label} α0={lr_label(lr)}",
                )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("final training loss (mean over seeds)")
    figures.legend_right(ax)
    return figures.save(fig, out, "batch_robustness.png")


def batch_robustness(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    rows = method_rows(records)
    records = [r for _, rs in rows for r in rs]
    sizes = values(records, "batch_size")
    lrs = values(records, "lr", reverse=True)
    labels = [label for label, _ in rows]
    cell = {
        (label, *key): _final_losses(rs)
        for label, by_label in rows
        for key, rs in group_by(by_label, "batch_size", "lr").items()
    }
    table_rows = [
        [str(bs), lr_label(lr), *(_loss(mean_std(cell.get((label, bs, lr), []))) for label in labels)]
        for bs in sizes
        for lr in lrs
    ]
    n = rows_seeds_phrase(rows, "batch_size", "lr")
    lines = [f"### Final training loss per batch size and initial rate, mean ± std over {n}", ""]
    lines += table(["batch", "α0", *labels], table_rows)
    summary = {
        (label, bs): over_rates(map(_final_losses, group_by(select(rs, batch_size=bs), "lr").values()))[0]
        for label, rs in rows
        for bs in sizes
    }
    rates = n_phrase(
        [values(rs, "lr") for _, by in rows for rs in group_by(by, "batch_size").values()], "rate"
    )
    lines += ["", f"### Over the initial rates ({rates}, each the mean over its seeds), per batch size", ""]
    lines += table(
        ["batch", *labels], [[str(bs), *(_loss(summary[(label, bs)]) for label in labels)] for bs in sizes]
    )
    lines += [
        "",
        "The paper prints no numbers for batch size; it says the rule is robust to it (Section 3). Here:",
        "",
    ]
    for label in labels:
        if label == SGD:
            continue
        pairs = [
            (mean_std(cell[(SGD, bs, lr)])[0], mean_std(cell[(label, bs, lr)])[0])
            for bs in sizes
            for lr in lrs
            if (SGD, bs, lr) in cell and (label, bs, lr) in cell
        ]
        if pairs:
            wins = sum(1 for s, t in pairs if math.isfinite(t) and not (math.isfinite(s) and s <= t))
            lines.append(
                f"- {label} ends lower than SGD in {wins} of {len(pairs)} (batch, α0) cells "
                "(means over seeds)"
            )
    for label in labels:
        span = [summary[(label, bs)][0] for bs in sizes if math.isfinite(summary[(label, bs)][0])]
        if span:
            lo, hi = min(span), max(span)
            lines.append(
                f"- {label}: the mean over α0 runs from {lo:.3f} to {hi:.3f} over batch sizes "
                f"{sizes[0]} … {sizes[-1]} ({hi / lo:.1f}×)"
                if lo > 0
                else f"- {label}: {lo:.3f} … {hi:.3f}"
            )
    by_cell = {
        (bs, lr): group_by_method(rs) for (bs, lr), rs in group_by(records, "batch_size", "lr").items()
    }
    lines += _default_vs_paper(
        dict(sorted(by_cell.items(), key=lambda item: (item[0][0], -item[0][1]))),
        lambda key: f"batch {key[0]}, α0 = {lr_label(key[1])}",
        "(batch, α0)",
    )
    name = _batch_figure(cell, labels, sizes, lrs, out)
    return [*lines, "", f"![final loss vs batch size, each point the mean over {n}]({name})", ""]
