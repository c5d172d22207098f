"""The gauntlet's long-horizon tier: the scoreboard, each TLR run's rate over the whole run beside the tuned
constant rates, and what each run's meta-steps did (how many rollbacks, holds, caps)."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ntlr import Status

from ...records import RunRecord
from .. import figures
from ..markdown import fmt_value, table
from ..select import final_loss, final_metric, group_by
from ..stats import n_phrase
from .gauntlet import gauntlet

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = ["long_horizon"]

# The statuses a reader checks a whole run for: how often the rule undid, vetoed, capped or was held.
_COUNTED = (Status.ROLLBACK, Status.LOSS_GUARD, Status.CAPPED, Status.SCHEDULE_HOLD, Status.UPDATED)


def _method(record: RunRecord) -> str:
    from ...scoreboard import tlr_method  # the scoreboard's own name for the run's rule

    return tlr_method(record["config"])


def _is_tlr(record: RunRecord) -> bool:
    return str(record["config"]["optimizer"]).startswith("tlr_")


def _statuses(record: RunRecord) -> Counter[str]:
    return Counter(str(entry.get("status")) for entry in record.get("optimizer_history") or [])


def _inner(record: RunRecord) -> str:
    from ...scoreboard import inner_label

    return inner_label(record)


def _runs_table(records: list[RunRecord]) -> list[str]:
    rows = []
    order = sorted(
        records,
        key=lambda r: (
            r["config"]["workload"],
            _method(r),
            _inner(r),
            -r["config"]["lr"],
            r["config"]["seed"],
        ),
    )
    for record in order:
        counts = _statuses(record)
        rates = [row[0] for row in record["lr"] or []]
        rows.append(
            [
                record["config"]["workload"],
                _method(record),
                _inner(record),
                f"{record['config']['lr']:g}",
                str(record["config"]["seed"]),
                fmt_value(final_loss(record)),
                "" if not rates else f"{rates[-1]:.2g}",
                *[str(counts.get(status.value, 0)) for status in _COUNTED],
            ]
        )
    header = [
        "workload",
        "rule",
        "inner",
        "α0",
        "seed",
        "final train loss",
        "final rate",
        *[s.value for s in _COUNTED],
    ]
    return [
        "## Each TLR run: where the rate ended and what its meta-steps did",
        "",
        *table(header, rows),
        "",
    ]


def _panels(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """The TLR and constant-rate runs by workload and inner optimizer, one panel each: a constant rate is
    judged beside the TLR runs around the same optimizer only."""
    from ...scoreboard import inner_label

    panels: dict[str, list[RunRecord]] = {}
    for workload, runs in group_by(records, "workload").items():
        for record in runs:
            if _is_tlr(record) or record["config"]["optimizer"] in ("sgd", "adamw"):
                panels.setdefault(f"{workload}, {inner_label(record)}", []).append(record)
    return dict(sorted(panels.items()))


def _rate_figure(records: list[RunRecord], out: Path) -> str:
    by_workload = _panels(records)
    fig, axes = figures.figure(len(by_workload), (4.2 * len(by_workload), 4.2))
    axes = axes if len(by_workload) > 1 else [axes]
    colors = {"TLR-robust": "tab:red", "TLR-robust+anneal": "tab:purple", "TLR-paper": "tab:green"}
    seen: dict[str, object] = {}  # label -> a handle: one legend for all panels, under them
    for ax, (workload, runs) in zip(axes, by_workload.items()):
        for record in runs:
            if _is_tlr(record) and record["lr"]:
                rates = [row[0] for row in record["lr"]]
                method = _method(record)
                ax.plot(
                    figures.epochs(record, len(rates)),
                    rates,
                    color=colors.get(method, "tab:orange"),
                    alpha=0.8,
                    label=method,
                )
            elif record["config"]["optimizer"] in ("sgd", "adamw"):
                loss = final_loss(record)
                ax.axhline(
                    record["config"]["lr"],
                    color="tab:gray",
                    linestyle="--",
                    linewidth=1,
                    label="constant rate",
                )
                ax.annotate(
                    f"{fmt_value(loss)}", (0.0, record["config"]["lr"]), fontsize="small", color="tab:gray"
                )
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("effective learning rate")
        ax.set_title(str(workload), fontsize="medium")
        seen.update(zip(*reversed(ax.get_legend_handles_labels())))
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="outside lower center",
            ncol=len(seen),
            fontsize=figures.LEGEND_FONTSIZE,
            frameon=False,
        )
    fig.suptitle(
        "the trained rate over each whole run (one line per α0); dashed: the constant rates tried, "
        "labelled with their final training loss",
        fontsize="medium",
    )
    return figures.save(fig, out, "long_horizon_rates.png")


def _cell(record: RunRecord) -> tuple[str, str, str, str]:
    """A run's cell across seeds: workload, method (a TLR rule, or the registry name and the settings a
    peer ran with), inner optimizer, and the knob's value (α0 or the rate; a peer's own knob)."""
    config = record["config"]
    overrides = dict(config.get("overrides") or {})
    if _is_tlr(record):
        method = _method(record)
        knob = f"{config['lr']:g}"
    else:
        from ...experiments import natural_knob

        method = str(config["optimizer"])
        name = natural_knob(method)
        value = overrides.pop(name, config["lr"]) if name != "lr" else config["lr"]
        knob = f"{name}={value:g}"
        if _inner(record) == method and overrides:  # a peer with settings of its own: a method of its own
            method += " (" + ", ".join(f"{k}={v:g}" for k, v in sorted(overrides.items())) + ")"
    return config["workload"], method, _inner(record), knob


def _cells(records: list[RunRecord]) -> dict[tuple[str, str, str, str], list[RunRecord]]:
    """The records by cell (:func:`_cell`): a cell's records are its seeds."""
    cells: dict[tuple[str, str, str, str], list[RunRecord]] = {}
    for record in records:
        cells.setdefault(_cell(record), []).append(record)
    return cells


def _fmt_spread(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    bad = len(values) - len(finite)
    if not finite:
        return "∞"
    mean = statistics.fmean(finite)
    std = statistics.pstdev(finite) if len(finite) > 1 else math.nan
    text = f"{mean:.3g} ± {std:.2g}" if len(finite) > 1 else f"{mean:.3g}"
    return text + (f" ({bad} diverged)" if bad else "")


def _seeds_table(records: list[RunRecord]) -> list[str]:
    """Each cell run with more than one seed: the final training loss's mean ± std over its seeds (the
    population std), its range, and the seeds; nothing when every cell ran one seed."""
    cells = _cells(records)
    shown = {
        cell: members for cell, members in cells.items() if len({r["config"]["seed"] for r in members}) > 1
    }
    rows = []
    for cell, members in sorted(shown.items()):
        values = [final_loss(r) for r in members]
        finite = [v for v in values if math.isfinite(v)]
        span = f"{min(finite):.3g} – {max(finite):.3g}" if finite else "–"
        seeds = ", ".join(str(s) for s in sorted(r["config"]["seed"] for r in members))
        rows.append([*cell, str(len(members)), _fmt_spread(values), span, seeds])
    if not rows:
        return []
    return [
        "## Cells run with more than one seed",
        "",
        f"Final training loss over each cell's seeds ({n_phrase(shown.values(), 'seed')}): mean ± std "
        f"(population) and range. {len(cells) - len(shown)} other cell(s) ran one seed (the tables above).",
        "",
        *table(
            ["workload", "method", "inner", "α0 / knob", "runs", "final train loss", "range", "seeds"], rows
        ),
        "",
    ]


def _held_out_table(records: list[RunRecord]) -> list[str]:
    """Every cell's final training loss beside its test loss and accuracy (means over its seeds): the
    scoreboard ranks by training loss, which rewards fitting the training set; this shows what it cost."""
    cells = _cells(records)

    def mean(members: list[RunRecord], key: str, scale: float = 1.0) -> str:
        values = [final_metric(r, key) for r in members]
        finite = [v for v in values if math.isfinite(v)]
        return f"{statistics.fmean(finite) * scale:.3g}" if finite else "–"

    rows = [
        [
            *cell,
            str(len(members)),
            mean(members, "train_loss"),
            mean(members, "test_loss"),
            mean(members, "test_accuracy", 100.0),
        ]
        for cell, members in sorted(cells.items())
    ]
    return [
        "## Held out: test loss and accuracy at the end",
        "",
        f"Each cell's means over its seeds ({n_phrase(cells.values(), 'seed')}; the character "
        "model records no accuracy). Lower training loss is not always lower test loss: a method that fits "
        "the training set hardest (no weight decay, a large rate, iterate averaging) can end with the lowest "
        "training loss and a high test loss.",
        "",
        *table(
            ["workload", "method", "inner", "α0 / knob", "runs", "train loss", "test loss", "test acc %"],
            rows,
        ),
        "",
    ]


def long_horizon(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    lines = gauntlet(exp, records, out)
    tlr = [r for r in records if _is_tlr(r)]
    if not tlr:
        return lines
    return [
        *lines,
        *_seeds_table(records),
        *_held_out_table(records),
        *_runs_table(tlr),
        f"![rates]({_rate_figure(records, out)})",
        "",
    ]
