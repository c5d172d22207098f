"""Robustness to the initial rate (Fig. 2, and the demo on digits) and to the batch size (Section 3)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...records import RunRecord
from .. import figures
from ..markdown import lr_label, table
from ..select import config_value, final_loss, final_metric, group_by, select, values
from ..stats import fmt_ms, mean_std, n_phrase, over_rates

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = ["batch_robustness", "by_lr_table", "lr0_robustness"]

_PAIR = ("sgd", "tlr_sgd")


def by_lr_table(records: list[RunRecord], optimizers: tuple[str, ...]) -> list[str]:
    """Final training loss and test accuracy per initial rate (rows) and optimizer, over seeds."""
    rows = []
    for lr in values(records, "lr", reverse=True):
        row = [lr_label(lr)]
        for name in optimizers:
            rs = select(records, lr=lr, optimizer=name)
            row.append(fmt_ms(mean_std(final_loss(r) for r in rs)))
            row.append(fmt_ms(mean_std(100 * final_metric(r, "test_accuracy") for r in rs), 1))
        rows.append(row)
    header = ["α0"] + [f"{name} {what}" for name in optimizers for what in ("train loss", "test acc %")]
    return table(header, rows)


def seeds_phrase(records: list[RunRecord], *keys: str) -> str:
    """How many seeds each cell of ``keys`` averages: "n = 3 seeds"."""
    return n_phrase(group_by(records, *keys).values(), "seed")


def _paper_lr0_rows(records: list[RunRecord], paper: dict[str, Any]) -> list[str]:
    at_01 = {n: select(records, optimizer=n, lr=0.1) for n in _PAIR}
    rows = []
    for name, key in (("sgd", "sgd_lr0.1"), ("tlr_sgd", "tlr_lr0.1")):
        ours = at_01[name]
        rows.append(
            [
                name,
                fmt_ms(mean_std(final_loss(r) for r in ours)),
                fmt_ms(mean_std(100 * final_metric(r, "test_accuracy") for r in ours), 1),
                f"{paper[key]['loss']:.3f}",
                f"{100 * paper[key]['accuracy']:.1f}",
            ]
        )
    n = seeds_phrase([r for rs in at_01.values() for r in rs], "optimizer")
    lines = [f"α0 = 0.1 beside the paper's numbers (ours: mean ± std over {n}):", ""]
    lines += table(["", "loss (ours)", "acc % (ours)", "loss (paper)", "acc % (paper)"], rows)
    return [*lines, ""]


def _fig2_curves(records: list[RunRecord], out: Path) -> list[str]:
    """Fig. 2: loss and rate of the first seed's runs, one colour per α0, TLR solid and SGD dotted."""
    fig, (ax_loss, ax_lr) = figures.figure(2, (12, 5))
    lrs = values(records, "lr", reverse=True)
    cmap = figures.plt().get_cmap("viridis")
    color = {lr: cmap(i / max(1, len(lrs) - 1)) for i, lr in enumerate(lrs)}
    chosen = sorted(select(records, seed=0), key=lambda r: -config_value(r, "lr"))
    figures.curves(
        ax_loss,
        ax_lr,
        chosen,
        label=lambda r: (
            f"{'TLR' if config_value(r, 'optimizer') == 'tlr_sgd' else 'SGD'} "
            f"α0={lr_label(config_value(r, 'lr'))}"
        ),
        style=lambda r: {
            "color": color[config_value(r, "lr")],
            "linestyle": "-" if config_value(r, "optimizer") == "tlr_sgd" else ":",
        },
    )
    figures.legend_below(fig, ax_lr)
    name = figures.save(fig, out, "fig2_lr0_robustness.png")
    return [f"![Fig. 2 reproduced: loss and learning rate, TLR solid, SGD dotted]({name})", ""]


def lr0_robustness(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    n = seeds_phrase(records, "optimizer", "lr")
    lines = [f"### Final training loss and test accuracy per initial rate, mean ± std over {n}", ""]
    lines += by_lr_table(records, _PAIR)
    summary = {name: mean_std(final_loss(r) for r in select(records, optimizer=name)) for name in _PAIR}
    lines += [
        "",
        f"Over all initial rates: SGD {fmt_ms(summary['sgd'])}, TLR-SGD {fmt_ms(summary['tlr_sgd'])}.",
        "",
    ]
    if exp.paper_numbers:
        lines += _paper_lr0_rows(records, exp.paper_numbers)
    return [*lines, "", *_fig2_curves(records, out)]


def _final_losses(records: list[RunRecord]) -> list[float]:
    return [final_loss(r) for r in records]


def _batch_figure(
    cell: dict[Any, list[float]], sizes: list[int], lrs: list[float], seeds: int, out: Path
) -> str:
    fig, ax = figures.figure(1, (8, 4))
    for name, style in (("sgd", ":o"), ("tlr_sgd", "-o")):
        for lr in lrs:
            pts = [(bs, mean_std(cell[(name, bs, lr)])[0]) for bs in sizes if (name, bs, lr) in cell]
            if pts:
                ax.plot(*zip(*pts), style, label=f"{name} α0={lr_label(lr)}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"final training loss (mean of {seeds} seed(s))")
    figures.legend_right(ax)
    return figures.save(fig, out, "batch_robustness.png")


def batch_robustness(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    sizes = values(records, "batch_size")
    lrs = values(records, "lr", reverse=True)
    seeds = len(values(records, "seed"))
    cell = {k: _final_losses(rs) for k, rs in group_by(records, "optimizer", "batch_size", "lr").items()}
    rows = [
        [str(bs), lr_label(lr), *(fmt_ms(mean_std(cell.get((name, bs, lr), []))) for name in _PAIR)]
        for bs in sizes
        for lr in lrs
    ]
    n = n_phrase(cell.values(), "seed")
    lines = [f"### Final training loss per batch size and initial rate, mean ± std over {n}", ""]
    lines += table(["batch", "α0", "SGD", "TLR-SGD"], rows)
    summary = {
        (name, bs): over_rates(
            _final_losses(rs)
            for rs in group_by(select(records, optimizer=name, batch_size=bs), "lr").values()
        )[0]
        for name in _PAIR
        for bs in sizes
    }
    rates = n_phrase(
        [values(rs, "lr") for rs in group_by(records, "optimizer", "batch_size").values()], "rate"
    )
    lines += ["", f"### Over the initial rates ({rates}, each the mean over its seeds), per batch size", ""]
    lines += table(
        ["batch", "SGD", "TLR-SGD"],
        [[str(bs), *(fmt_ms(summary[(name, bs)]) for name in _PAIR)] for bs in sizes],
    )
    pairs = [
        (mean_std(cell[("sgd", bs, lr)])[0], mean_std(cell[("tlr_sgd", bs, lr)])[0])
        for bs in sizes
        for lr in lrs
        if ("sgd", bs, lr) in cell and ("tlr_sgd", bs, lr) in cell
    ]
    wins = sum(1 for s, t in pairs if math.isfinite(t) and not (math.isfinite(s) and s <= t))
    spans = {
        name: [summary[(name, bs)][0] for bs in sizes if math.isfinite(summary[(name, bs)][0])]
        for name in _PAIR
    }
    lines += [
        "",
        "The paper prints no numbers for batch size; it says the rule is robust to it (Section 3). Here:",
        "",
        f"- TLR-SGD ends lower than SGD in {wins} of {len(pairs)} (batch, α0) cells (means over seeds)",
    ]
    for name, label in (("sgd", "SGD"), ("tlr_sgd", "TLR-SGD")):
        if spans[name]:
            lo, hi = min(spans[name]), max(spans[name])
            lines.append(
                f"- {label}: the mean over α0 runs from {lo:.3f} to {hi:.3f} over batch sizes "
                f"{sizes[0]} … {sizes[-1]} ({hi / lo:.1f}×)"
                if lo > 0
                else f"- {label}: {lo:.3f} … {hi:.3f}"
            )
    name = _batch_figure(cell, sizes, lrs, seeds, out)
    return [*lines, "", f"![final loss vs batch size]({name})", ""]
