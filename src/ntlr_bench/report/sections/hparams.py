"""The hyper-parameter exploration of Section 3: the p × γ grid (Fig. 1), and the summary rows it prints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...records import RunRecord
from .. import figures
from ..markdown import table
from ..select import config_value, final_loss, group_by, select, values
from ..stats import against, fmt_ms, mean_std, n_phrase, over_rates
from .robustness import by_lr_table, seeds_phrase

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = ["hparam_grid", "hparam_summary"]

# The two published default pairs (p, γ): the paper's text and the authors' code.
_PUBLISHED = {"paper text (p=0.2, γ=0.33)": (0.2, 0.33), "authors' code (p=1/3, γ=0.2)": (1 / 3, 0.2)}


def _grid_tables(exp: Experiment, tlr: list[RunRecord], sgd: list[RunRecord]) -> list[str]:
    cells = {k: [final_loss(r) for r in rs] for k, rs in group_by(tlr, "p", "gamma").items()}
    ps = sorted({k[0] for k in cells})
    gammas = sorted({k[1] for k in cells})
    n = n_phrase(cells.values(), "run")
    lines = [f"### Final training loss, mean ± std over initial rates and batch sizes ({n} a cell)", ""]
    rows = []
    best = min(cells, key=lambda k: (mean_std(cells[k])[3], mean_std(cells[k])[0]), default=None)
    for p in ps:
        row = [f"p = {p:.3g}"]
        for g in gammas:
            text = fmt_ms(mean_std(cells.get((p, g), [])))
            row.append(f"**{text}**" if (p, g) == best else text)
        rows.append(row)
    lines += table(["TLR-SGD"] + [f"γ = {g:.3g}" for g in gammas], rows)
    sgd_stats = mean_std(final_loss(r) for r in sgd)
    lines += ["", f"SGD over the same initial rates and batch sizes: {fmt_ms(sgd_stats)}.", ""]
    if best is None:
        return lines
    paper = exp.paper_numbers
    sgd_128 = select(sgd, batch_size=128)
    tlr_128 = [
        r for r in select(tlr, batch_size=128) if (config_value(r, "p"), config_value(r, "gamma")) == best
    ]
    n_128 = n_phrase([sgd_128, tlr_128], "run")
    lines += table(
        [f"batch 128, over initial rates ({n_128})", "ours", "paper"],
        [
            [
                "SGD",
                fmt_ms(mean_std(final_loss(r) for r in sgd_128)),
                "{:.3f} ± {:.3f}".format(*paper["sgd_bs128"]),
            ],
            [
                f"TLR (best cell p={best[0]:.3g}, γ={best[1]:.3g})",
                fmt_ms(mean_std(final_loss(r) for r in tlr_128)),
                "{:.3f} ± {:.3f}".format(*paper["tlr_bs128"]),
            ],
        ],
    )
    lines += ["", "The two published default pairs:", ""]
    for name, (p, g) in _PUBLISHED.items():
        key = next((k for k in cells if abs(k[0] - p) < 1e-9 and abs(k[1] - g) < 1e-9), None)
        lines.append(f"- {name}: {fmt_ms(mean_std(cells[key])) if key else 'not in this grid'}")
    return [*lines, ""]


def _fig1_rate_curves(tlr: list[RunRecord], out: Path) -> list[str]:
    """Fig. 1: rate curves for several p at γ = 0.2 and several γ at p = 1/3 (α0 = 1e-2, batch 128)."""
    fig, axes = figures.figure(2, (12, 4))
    panels: tuple[tuple[Any, dict[str, float], str, str], ...] = (
        (axes[0], {"gamma": 0.2}, "p", "γ = 0.2"),
        (axes[1], {"p": 1 / 3}, "gamma", "p = 1/3"),
    )
    for ax, fixed, vary, title in panels:
        chosen = select(tlr, **fixed, batch_size=128, lr=1e-2, seed=0)
        chosen.sort(key=lambda r: config_value(r, vary))
        for r in chosen:
            ax.plot(
                figures.epochs(r, len(r["lr"])),
                [row[0] for row in r["lr"]],
                label=f"{vary} = {config_value(r, vary):.3g}",
            )
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.set_title(f"TLR-SGD, α0 = 1e-2, batch 128, {title}")
        figures.legend_right(ax)
    name = figures.save(fig, out, "fig1_lr_curves.png")
    return [f"![Fig. 1 reproduced: learning-rate curves]({name})", ""]


def hparam_grid(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    tlr, sgd = select(records, optimizer="tlr_sgd"), select(records, optimizer="sgd")
    return [*_grid_tables(exp, tlr, sgd), *_fig1_rate_curves(tlr, out)]


def hparam_summary(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    paper = exp.paper_numbers
    at_128 = select(records, batch_size=128)
    rows, lines_against, ours = [], [], {}
    for name, label, settings, key in (
        ("sgd", "SGD", "", "sgd_bs128"),
        ("tlr_sgd", "TLR-SGD", " (p = 0.2, γ = 0.33)", "tlr_bs128"),
    ):
        by_rate = group_by(select(at_128, optimizer=name), "lr").values()
        stats, seed_std = over_rates([final_loss(r) for r in rs] for rs in by_rate)
        ours[name] = stats
        rows.append(
            [
                label + settings,
                fmt_ms(stats),
                "–" if math.isnan(seed_std) else f"{seed_std:.2g}",
                "{:.3f} ± {:.3f}".format(*paper[key]),
            ]
        )
        if math.isfinite(stats[0]):
            lines_against.append(f"- {label}: mean {against(stats[0], paper[key])}")
    rates = n_phrase([values(rs, "lr") for rs in group_by(at_128, "optimizer").values()], "rate")
    seeds = seeds_phrase(at_128, "optimizer", "lr")
    lines = [
        f"### Batch 128: final training loss over the initial rates ({rates}, each the mean of {seeds})",
        "",
    ]
    lines += table(
        [
            "",
            "ours: mean ± std over α0 (each α0: mean over seeds)",
            "largest std over seeds at one α0",
            "paper",
        ],
        rows,
    )
    lines += ["", "Against the paper's numbers:", "", *lines_against]
    sgd_mean, tlr_mean = ours["sgd"][0], ours["tlr_sgd"][0]
    if math.isfinite(sgd_mean) and math.isfinite(tlr_mean) and tlr_mean > 0:
        ratio_paper = paper["sgd_bs128"][0] / paper["tlr_bs128"][0]
        lines.append(
            f"- SGD's mean over TLR-SGD's: {sgd_mean / tlr_mean:.1f}× here, {ratio_paper:.1f}× in the paper"
        )
    lines += ["", f"### Per initial rate (mean ± std over {seeds_phrase(records, 'optimizer', 'lr')})", ""]
    lines += by_lr_table(records, ("sgd", "tlr_sgd"))
    return [*lines, ""]
