"""Turn an experiment's run records into Markdown with the paper's figures and tables beside ours."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .experiments import Experiment
from .outcome import Outcome, outcome
from .records import RECORD_PATTERNS, RecordError, RunRecord, curve_steps, read_record

__all__ = ["load_records", "mean_std", "write_report"]

Record = RunRecord


def load_records(dirs: Iterable[str | os.PathLike]) -> list[Record]:
    """Every run record under ``dirs`` (shards merged; a run present twice counts once).

    Every ``.json`` file there, and every gzip-compressed ``.json.gz`` one (the records committed beside a
    report, see ``pack``), must be a record this version can read (see ``records.check_record``): one that
    is not raises RecordError naming it, rather than being left out of the report unnoticed.
    """
    found: dict[str, Record] = {}
    for d in dirs:
        paths = {path for pattern in RECORD_PATTERNS for path in Path(d).rglob(pattern)}
        for path in sorted(paths):
            try:
                record = read_record(path)
            except OSError as error:
                raise RecordError(f"{path}: cannot read it ({error.strerror or error})") from None
            found.setdefault(record["run_id"], record)
    return list(found.values())


def final_loss(record: Record) -> float:
    """Final training loss; a diverged run (see ``outcome``) has none (NaN) and is counted separately."""
    if outcome(record) is Outcome.DIVERGED:
        return math.nan
    return float(record.get("final", {}).get("train_loss", math.nan))


def final_metric(record: Record, key: str) -> float:
    if outcome(record) is Outcome.DIVERGED:
        return math.nan
    return float(record.get("final", {}).get(key, math.nan))


def mean_std(values: Iterable[float]) -> tuple[float, float, int, int]:
    """(mean, population std, n finite, n non-finite), the paper's "mean ± std" over a grid."""
    values = list(values)
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0, len(values)
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
    return mean, std, len(finite), len(values) - len(finite)


def fmt_ms(stats: tuple[float, float, int, int], digits: int = 3) -> str:
    """ "mean ± std", or "value (n = 1)" for a single run, whose spread is unknown rather than zero."""
    mean, std, n, bad = stats
    if not math.isfinite(mean):
        text = "–"
    elif n == 1:
        text = f"{mean:.{digits}f} (n = 1)"
    else:
        text = f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text + (f" ({bad} diverged)" if bad else "")


def _cfg(record: Record, key: str) -> Any:
    return record["config"][key]


def _ov(record: Record, key: str, default: Any = None) -> Any:
    return record["config"].get("overrides", {}).get(key, default)


def _lr_label(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc, q = [], 0.0, []
    for v in values:
        v = v if math.isfinite(v) else math.nan
        q.append(v)
        acc += v
        if len(q) > window:
            acc -= q.pop(0)
        out.append(acc / len(q))
    return out


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _epochs(record: Record, points: int) -> list[float]:
    """The epoch (fractional) at each of the first ``points`` points of the record's per-step curves."""
    return [s / record["steps_per_epoch"] for s in curve_steps(record, points)]


def _smoothing(record: Record) -> int:
    """A fifth of an epoch, in points of the record's (possibly thinned) per-step curves."""
    stride = int((record.get("thinned") or {}).get("stride", 1))
    return max(1, record["steps_per_epoch"] // 5 // stride)


def _curves(
    ax_loss: Any,
    ax_lr: Any,
    records: list[Record],
    label: Callable[[Record], str],
    style: Callable[[Record], dict[str, Any]] | None = None,
) -> None:
    for record in records:
        kwargs = style(record) if style else {}
        epochs = _epochs(record, len(record["step_loss"]))
        ax_loss.plot(epochs, _smooth(record["step_loss"], _smoothing(record)), label=label(record), **kwargs)
        if ax_lr is not None and record["lr"]:
            lrs = [row[0] for row in record["lr"]]
            ax_lr.plot(_epochs(record, len(lrs)), lrs, label=label(record), **kwargs)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (smoothed)")
    if ax_lr is not None:
        ax_lr.set_yscale("log")
        ax_lr.set_xlabel("epoch")
        ax_lr.set_ylabel("learning rate")


# Legends use the axes' own text size and sit outside the axes: inside, they hide the curves, and at the
# 6-7 pt they had, scaled down to a page's width, nobody could read them.
LEGEND_FONTSIZE = "medium"


def _figure(ncols: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure with ``ncols`` axes side by side, laid out so that legends outside the axes fit."""
    return _plt().subplots(1, ncols, figsize=figsize, layout="constrained")


def _legend_right(ax: Any) -> None:
    """The legend of ``ax`` beside it, to the right of the axes."""
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=LEGEND_FONTSIZE, frameon=False)


def _legend_below(fig: Any, ax: Any, ncol: int = 4) -> None:
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


def _save(fig: Any, out_dir: Path, name: str) -> str:
    fig.savefig(out_dir / name, dpi=110)
    _plt().close(fig)
    return name


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# -- per-experiment sections ----------------------------------------------------------------------------


def _hparam_grid(exp: Experiment, records: list[Record], out: Path) -> list[str]:
    tlr = [r for r in records if _cfg(r, "optimizer") == "tlr_sgd"]
    sgd = [r for r in records if _cfg(r, "optimizer") == "sgd"]
    cells: dict[tuple[float, float], list[float]] = defaultdict(list)
    for r in tlr:
        cells[(_ov(r, "p"), _ov(r, "gamma"))].append(final_loss(r))
    ps = sorted({k[0] for k in cells})
    gammas = sorted({k[1] for k in cells})
    lines = ["### Final training loss, mean ± std over initial rates and batch sizes", ""]
    rows = []
    best = min(cells, key=lambda k: (mean_std(cells[k])[3], mean_std(cells[k])[0]), default=None)
    for p in ps:
        row = [f"p = {p:.3g}"]
        for g in gammas:
            stats = mean_std(cells.get((p, g), []))
            text = fmt_ms(stats)
            row.append(f"**{text}**" if (p, g) == best else text)
        rows.append(row)
    lines += _table(["TLR-SGD"] + [f"γ = {g:.3g}" for g in gammas], rows)
    sgd_stats = mean_std(final_loss(r) for r in sgd)
    lines += ["", f"SGD over the same initial rates and batch sizes: {fmt_ms(sgd_stats)}.", ""]
    paper = exp.paper_numbers
    bs128_sgd = mean_std(final_loss(r) for r in sgd if r["batch_size"] == 128)
    if best is not None:
        bs128_tlr = mean_std(
            final_loss(r) for r in tlr if r["batch_size"] == 128 and (_ov(r, "p"), _ov(r, "gamma")) == best
        )
        lines += _table(
            ["batch 128, over initial rates", "ours", "paper"],
            [
                ["SGD", fmt_ms(bs128_sgd), "{:.3f} ± {:.3f}".format(*paper["sgd_bs128"])],
                [
                    f"TLR (best cell p={best[0]:.3g}, γ={best[1]:.3g})",
                    fmt_ms(bs128_tlr),
                    "{:.3f} ± {:.3f}".format(*paper["tlr_bs128"]),
                ],
            ],
        )
        candidates = {"paper text (p=0.2, γ=0.33)": (0.2, 0.33), "authors' code (p=1/3, γ=0.2)": (1 / 3, 0.2)}
        lines += ["", "The two published default pairs:", ""]
        for name, (p, g) in candidates.items():
            key = next((k for k in cells if abs(k[0] - p) < 1e-9 and abs(k[1] - g) < 1e-9), None)
            lines.append(f"- {name}: {fmt_ms(mean_std(cells[key])) if key else 'not in this grid'}")
        lines.append("")
    # Fig. 1: rate curves for several p at γ=0.2 and several γ at p=1/3 (α0 = 1e-2, batch 128).
    fig, axes = _figure(2, (12, 4))
    for ax, fixed, vary, title in (
        (axes[0], ("gamma", 0.2), "p", "γ = 0.2"),
        (axes[1], ("p", 1 / 3), "gamma", "p = 1/3"),
    ):
        chosen = [
            r
            for r in tlr
            if abs(_ov(r, fixed[0]) - fixed[1]) < 1e-9
            and r["batch_size"] == 128
            and _cfg(r, "lr") == 1e-2
            and _cfg(r, "seed") == 0
        ]
        chosen.sort(key=lambda r: _ov(r, vary))
        for r in chosen:
            ax.plot(
                _epochs(r, len(r["lr"])), [row[0] for row in r["lr"]], label=f"{vary} = {_ov(r, vary):.3g}"
            )
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.set_title(f"TLR-SGD, α0 = 1e-2, batch 128, {title}")
        _legend_right(ax)
    name = _save(fig, out, "fig1_lr_curves.png")
    lines += [f"![Fig. 1 reproduced: learning-rate curves]({name})", ""]
    return lines


def _by_lr_table(records: list[Record], optimizers: tuple[str, ...]) -> list[str]:
    lrs = sorted({_cfg(r, "lr") for r in records}, reverse=True)
    rows = []
    for lr in lrs:
        row = [_lr_label(lr)]
        for name in optimizers:
            rs = [r for r in records if _cfg(r, "lr") == lr and _cfg(r, "optimizer") == name]
            row.append(fmt_ms(mean_std(final_loss(r) for r in rs)))
            row.append(fmt_ms(mean_std(100 * final_metric(r, "test_accuracy") for r in rs), 1))
        rows.append(row)
    header = ["α0"] + [f"{name} {what}" for name in optimizers for what in ("train loss", "test acc %")]
    return _table(header, rows)


def _paper_lr0_rows(records: list[Record], paper: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    at_01 = {
        n: [r for r in records if _cfg(r, "optimizer") == n and _cfg(r, "lr") == 0.1]
        for n in ("sgd", "tlr_sgd")
    }
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
    lines += ["α0 = 0.1 beside the paper's numbers:", ""]
    lines += _table(["", "loss (ours)", "acc % (ours)", "loss (paper)", "acc % (paper)"], rows)
    return [*lines, ""]


def _lr0_robustness(exp: Experiment, records: list[Record], out: Path) -> list[str]:
    lines = ["### Final training loss and test accuracy per initial rate", ""]
    lines += _by_lr_table(records, ("sgd", "tlr_sgd"))
    summary = {
        name: mean_std(final_loss(r) for r in records if _cfg(r, "optimizer") == name)
        for name in ("sgd", "tlr_sgd")
    }
    lines += [
        "",
        f"Over all initial rates: SGD {fmt_ms(summary['sgd'])}, TLR-SGD {fmt_ms(summary['tlr_sgd'])}.",
        "",
    ]
    paper = exp.paper_numbers
    if paper:
        lines += _paper_lr0_rows(records, paper)
    plt = _plt()
    fig, (ax_loss, ax_lr) = _figure(2, (12, 5))
    lrs = sorted({_cfg(r, "lr") for r in records}, reverse=True)
    cmap = plt.get_cmap("viridis")
    color = {lr: cmap(i / max(1, len(lrs) - 1)) for i, lr in enumerate(lrs)}
    chosen = sorted((r for r in records if _cfg(r, "seed") == 0), key=lambda r: -_cfg(r, "lr"))
    _curves(
        ax_loss,
        ax_lr,
        chosen,
        label=lambda r: (
            f"{'TLR' if _cfg(r, 'optimizer') == 'tlr_sgd' else 'SGD'} α0={_lr_label(_cfg(r, 'lr'))}"
        ),
        style=lambda r: {
            "color": color[_cfg(r, "lr")],
            "linestyle": "-" if _cfg(r, "optimizer") == "tlr_sgd" else ":",
        },
    )
    _legend_below(fig, ax_lr)
    name = _save(fig, out, "fig2_lr0_robustness.png")
    lines += ["", f"![Fig. 2 reproduced: loss and learning rate, TLR solid, SGD dotted]({name})", ""]
    return lines


def _per_seed_set(records: list[Record], key: Callable[[Record], Any]) -> dict[Any, list[float]]:
    """Final losses grouped by ``key`` (each group: one run per seed)."""
    groups: dict[Any, list[float]] = defaultdict(list)
    for r in records:
        groups[key(r)].append(final_loss(r))
    return groups


def _over_rates(records: list[Record]) -> tuple[tuple[float, float, int, int], float]:
    """The paper's "mean ± std across the learning rates", each rate's value the mean over its seeds;
    and the largest std over seeds at one rate (NaN when every rate ran one seed)."""
    by_lr = _per_seed_set(records, lambda r: _cfg(r, "lr"))
    per_rate = [mean_std(v) for v in by_lr.values()]
    stats = mean_std(m for m, _, _, _ in per_rate)
    bad = sum(b for _, _, _, b in per_rate)
    seed_std = max((sd for _, sd, n, _ in per_rate if n > 1), default=math.nan)
    return (stats[0], stats[1], stats[2], bad), seed_std


def _against(ours: float, paper: tuple[float, float]) -> str:
    mean, std = paper
    if abs(ours - mean) <= std:
        return f"{ours:.3f} against {mean:.3f}: within the paper's ± {std:.3f}"
    side = "below" if ours < mean else "above"
    return f"{ours:.3f} against {mean:.3f}: {side} the paper's mean by more than its ± {std:.3f}"


def _hparam_summary(exp: Experiment, records: list[Record], out: Path) -> list[str]:
    paper = exp.paper_numbers
    seeds = len({_cfg(r, "seed") for r in records})
    rows, against, ours = [], [], {}
    for name, label, settings, key in (
        ("sgd", "SGD", "", "sgd_bs128"),
        ("tlr_sgd", "TLR-SGD", " (p = 0.2, γ = 0.33)", "tlr_bs128"),
    ):
        chosen = [r for r in records if _cfg(r, "optimizer") == name and r["batch_size"] == 128]
        stats, seed_std = _over_rates(chosen)
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
            against.append(f"- {label}: mean {_against(stats[0], paper[key])}")
    lines = [f"### Batch 128: final training loss over the initial rates, {seeds} seed(s)", ""]
    lines += _table(
        [
            "",
            "ours: mean ± std over α0 (each α0: mean over seeds)",
            "largest std over seeds at one α0",
            "paper",
        ],
        rows,
    )
    lines += ["", "Against the paper's numbers:", "", *against]
    sgd_mean, tlr_mean = ours["sgd"][0], ours["tlr_sgd"][0]
    if math.isfinite(sgd_mean) and math.isfinite(tlr_mean) and tlr_mean > 0:
        ratio_paper = paper["sgd_bs128"][0] / paper["tlr_bs128"][0]
        lines.append(
            f"- SGD's mean over TLR-SGD's: {sgd_mean / tlr_mean:.1f}× here, {ratio_paper:.1f}× in the paper"
        )
    lines += ["", "### Per initial rate (mean ± std over seeds)", ""]
    lines += _by_lr_table(records, ("sgd", "tlr_sgd"))
    return [*lines, ""]


def _batch_robustness(exp: Experiment, records: list[Record], out: Path) -> list[str]:
    sizes = sorted({r["batch_size"] for r in records})
    lrs = sorted({_cfg(r, "lr") for r in records}, reverse=True)
    seeds = len({_cfg(r, "seed") for r in records})
    cell = _per_seed_set(records, lambda r: (_cfg(r, "optimizer"), r["batch_size"], _cfg(r, "lr")))
    rows = [
        [
            str(bs),
            _lr_label(lr),
            *(fmt_ms(mean_std(cell.get((name, bs, lr), []))) for name in ("sgd", "tlr_sgd")),
        ]
        for bs in sizes
        for lr in lrs
    ]
    lines = [f"### Final training loss per batch size and initial rate, mean ± std over {seeds} seed(s)", ""]
    lines += _table(["batch", "α0", "SGD", "TLR-SGD"], rows)
    summary = {
        (name, bs): _over_rates(
            [r for r in records if _cfg(r, "optimizer") == name and r["batch_size"] == bs]
        )[0]
        for name in ("sgd", "tlr_sgd")
        for bs in sizes
    }
    lines += ["", "### Over the initial rates (each α0: mean over seeds), per batch size", ""]
    lines += _table(
        ["batch", "SGD", "TLR-SGD"],
        [[str(bs), *(fmt_ms(summary[(name, bs)]) for name in ("sgd", "tlr_sgd"))] for bs in sizes],
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
        for name in ("sgd", "tlr_sgd")
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
    fig, ax = _figure(1, (8, 4))
    for name, style in (("sgd", ":o"), ("tlr_sgd", "-o")):
        for lr in lrs:
            pts = [(bs, mean_std(cell[(name, bs, lr)])[0]) for bs in sizes if (name, bs, lr) in cell]
            if pts:
                ax.plot(*zip(*pts), style, label=f"{name} α0={_lr_label(lr)}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"final training loss (mean of {seeds} seed(s))")
    _legend_right(ax)
    name = _save(fig, out, "batch_robustness.png")
    return [*lines, "", f"![final loss vs batch size]({name})", ""]


def _hypergrad_table(exp: Experiment, records: list[Record], out: Path) -> list[str]:
    columns = [
        ("hypergrad_add", 1e-1),
        ("hypergrad_add", 1e-2),
        ("hypergrad_mult", 1e-4),
        ("hypergrad_mult", 1e-5),
        ("tlr_sgd", None),
    ]
    paper = exp.paper_numbers
    rows, lowest = [], []
    spread: dict[int, list[tuple[float, float]]] = defaultdict(list)  # column → (mean, std) per α0
    for lr in sorted({_cfg(r, "lr") for r in records}, reverse=True):
        row = [_lr_label(lr)]
        means: list[float] = []
        for name, eta in columns:
            rs = [
                r
                for r in records
                if _cfg(r, "lr") == lr
                and _cfg(r, "optimizer") == name
                and (eta is None or _ov(r, "eta") == eta)
            ]
            stats = mean_std(final_loss(r) for r in rs)
            row.append(fmt_ms(stats, 2))
            if math.isfinite(stats[0]):
                spread[len(means)].append((stats[0], stats[1]))
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
                f"- α0 = {_lr_label(lr)}: lowest here {paper['columns'][ours]} ({means[ours]:.2f})"
                + (f"; in the paper {paper['columns'][theirs]} ({ref[theirs][0]:.2f})" if ref else "")
            )
    lines = ["### Final training loss, mean ± std over batch sizes (ours), and the paper's Table 1", ""]
    lines += _table(["α0", *paper["columns"], "paper (same columns, CIFAR-100)"], rows)
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
        for i, cells in sorted(spread.items()):
            lo, hi = min(m for m, _ in cells), max(m for m, _ in cells)
            lines.append(
                f"- {paper['columns'][i]}: mean {lo:.2f} … {hi:.2f} over α0, "
                f"std over batch sizes at most {max(sd for _, sd in cells):.2f}"
            )
    # Records from before the option ran the window sum.
    readings = sorted({str(_ov(r, "g", "sum")) for r in records if _cfg(r, "optimizer") == "hypergrad_add"})
    if readings:
        lines += [
            "",
            f"The additive rule's g: {', '.join(readings)} (\"mean\": the window's per-step mean direction, "
            "the reading under which the paper's η = 0.1 and 0.01 make sense; see "
            "`ntlr_bench/optimizers/hypergrad_window.py`).",
        ]
    return [*lines, ""]


def _comparison_knob(record: Record) -> tuple[str, float, float]:
    """The knob ``optimizer_comparison`` varied in ``record``: (name, value, the method's usual value).

    ``lr`` for most methods; ``d0`` for D-Adaptation and Prodigy, ``reps_rel`` for DoG (see
    ``experiments.comparison_knob``) when the record sets it. A record that does not (one from before those
    knobs were swept, its ``lr`` multiplier scaled instead) reads as ``lr``.
    """
    from .experiments import _DEFAULT_LR, comparison_knob

    name = _cfg(record, "optimizer")
    knob, usual = comparison_knob(name)
    if knob != "lr" and _ov(record, knob) is not None:
        return knob, float(_ov(record, knob)), usual
    return "lr", float(_cfg(record, "lr")), _DEFAULT_LR.get(name, math.nan)


def _at_usual(record: Record) -> bool:
    """Whether ``record`` ran its method at the usual value of its knob (and, for d0/reps_rel, at lr 1)."""
    from .experiments import _DEFAULT_LR

    knob, value, usual = _comparison_knob(record)
    if not math.isclose(value, usual, rel_tol=1e-9):
        return False
    return knob == "lr" or math.isclose(_cfg(record, "lr"), _DEFAULT_LR.get(_cfg(record, "optimizer"), -1))


def _optimizer_comparison(exp: Experiment, records: list[Record], out: Path) -> list[str]:
    lines = []
    for workload in sorted({_cfg(r, "workload") for r in records}):
        rs = [r for r in records if _cfg(r, "workload") == workload]
        default = [r for r in rs if _at_usual(r) and _cfg(r, "seed") == 0]
        default.sort(key=lambda r: _cfg(r, "optimizer"))
        fig, (ax_loss, ax_acc) = _figure(2, (12, 5))
        for r in default:
            ep = [e["epoch"] for e in r["evals"]]
            ax_loss.plot(
                ep,
                [e.get("train_loss", math.nan) for e in r["evals"]],
                "-o",
                ms=3,
                label=_cfg(r, "optimizer"),
            )
            ax_acc.plot(
                ep,
                [100 * e.get("test_accuracy", math.nan) for e in r["evals"]],
                "-o",
                ms=3,
                label=_cfg(r, "optimizer"),
            )
        ax_loss.set_yscale("log")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("training loss")
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylabel("test accuracy %")
        _legend_below(fig, ax_acc, ncol=6)
        curves = _save(fig, out, f"fig3_{workload}_curves.png")
        names = sorted({_cfg(r, "optimizer") for r in rs})
        knobs: dict[str, str] = {}
        # name -> {knob value / usual value: final losses over seeds}
        series: dict[str, dict[float, list[float]]] = {}
        for r in rs:
            name = _cfg(r, "optimizer")
            knob, value, usual = _comparison_knob(r)
            knobs.setdefault(name, knob)
            if knob == knobs[name] and math.isfinite(value / usual):  # not for a method with no usual value
                scale = float(f"{value / usual:.6g}")
                series.setdefault(name, {}).setdefault(scale, []).append(final_loss(r))
        sens = None
        if any(len(pts) > 1 for pts in series.values()):  # a sensitivity plot needs several values
            fig, ax = _figure(1, (8, 4.5))
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
            _legend_right(ax)
            sens = _save(fig, out, f"sensitivity_{workload}.png")
        rows = []
        for name in names:
            mine = [r for r in rs if _cfg(r, "optimizer") == name]
            at_default = [r for r in mine if _at_usual(r)]
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
        lines += [f"### {workload}", ""]
        lines += _table(
            [
                "optimizer",
                "knob (usual value)",
                "final train loss",
                "test acc %",
                "train loss over the knob's values",
                "wall s/run",
            ],
            rows,
        )
        scales = sorted({x for pts in series.values() for x in pts}, reverse=True)
        if len(scales) > 1:
            sens_rows = [
                [name, knobs[name], *(fmt_ms(mean_std(series[name].get(x, [])), 3) for x in scales)]
                for name in names
                if len(series.get(name, {})) > 1
            ]
            lines += ["", "Final training loss at each value of the method's knob, over its usual value:", ""]
            lines += _table(["optimizer", "knob", *(f"×{x:g}" for x in scales)], sens_rows)
        lines += ["", f"![curves at the usual rate]({curves})", ""]
        if sens is not None:
            lines += [f"![sensitivity to the initial-rate knob]({sens})", ""]
    return lines


def _translation(exp: Experiment, records: list[Record], out: Path) -> list[str]:
    fig, (ax_train, ax_valid) = _figure(2, (12, 5))
    rows = []
    for r in sorted(records, key=lambda r: _cfg(r, "optimizer")):
        label = f"{_cfg(r, 'optimizer')} lr={_cfg(r, 'lr'):g}"
        ax_train.plot(
            _epochs(r, len(r["step_loss"])),
            _smooth(r["step_loss"], _smoothing(r)),
            label=label,
        )
        ax_valid.plot(
            [e["epoch"] for e in r["evals"]],
            [e.get("test_loss", math.nan) for e in r["evals"]],
            "-o",
            ms=3,
            label=label,
        )
        best = min((e.get("test_loss", math.inf) for e in r["evals"]), default=math.nan)
        rows.append(
            [
                label,
                f"{final_loss(r):.3f}",
                f"{final_metric(r, 'test_loss'):.3f}",
                f"{best:.3f}",
                f"{final_metric(r, 'bleu'):.2f}",
                f"{r['wall_time_s']:.0f}",
            ]
        )
    for ax, what in ((ax_train, "training loss (smoothed)"), (ax_valid, "validation loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
    _legend_below(fig, ax_valid, ncol=3)
    name = _save(fig, out, "fig5_translation.png")
    lines = _table(["run", "final train loss", "final valid loss", "best valid loss", "BLEU", "wall s"], rows)
    return [*lines, "", f"![Fig. 5 reproduced: train and validation loss]({name})", ""]


def _fmt_value(value: float) -> str:
    return "∞" if math.isinf(value) else ("–" if math.isnan(value) else f"{value:.3g}")


def _gauntlet(exp: Experiment, records: list[Record], out: Path) -> list[str]:
    from .scoreboard import WORST_RATIO, score

    board = score(records)
    keys = board.workloads
    rules, peers = board.rules(), board.peers()
    lines = [
        "## Scoreboard",
        "",
        "Final training loss (least squares: excess over the known optimum), lower is better. A TLR rule "
        "runs untuned: its **median / worst** cell over every initial rate α0 ∈ {1, 1e-1, 1e-2, 1e-3, "
        "1e-4, 1e-6} and inner optimizer (SGD momentum 0.9 and 0.8, each with and without weight decay "
        "5e-4; Adam; AdamW), then `d` diverged and `s` stalled runs. A peer is shown at its **best** cell "
        "over its own knob (the value in brackets). ✓: the rule meets the default's target there (no "
        f"divergence or stall, median ≤ the best peer's best, worst ≤ {WORST_RATIO}× it).",
        "",
    ]
    header = ["method", *[str(k) for k in keys]]
    rows: list[list[str]] = []
    for rule in rules:
        row = [f"**{rule}**"]
        for key in keys:
            entry = board.scores[key].get(rule)
            if entry is None:
                row.append("")
                continue
            mark = " ✓" if board.meets_target(key, rule) else ""
            row.append(
                f"{_fmt_value(entry.median)} / {_fmt_value(entry.worst)} "
                f"({entry.diverged}d {entry.stalled}s){mark}"
            )
        rows.append(row)
    best_row = ["best peer"]
    for key in keys:
        best = board.best_peer(key)
        best_row.append("" if best is None else f"{_fmt_value(best[0])} ({best[1]})")
    rows.append(best_row)
    for peer in peers:
        row = [peer]
        for key in keys:
            entry = board.scores[key].get(peer)
            if entry is None:
                row.append("")
                continue
            value, knob = entry.best
            row.append(f"{_fmt_value(value)} [{knob}] ({entry.diverged}d)")
        rows.append(row)
    lines += [*_table(header, rows), ""]

    lines += ["## Each rule by inner optimizer (median / worst over α0, diverged, stalled)", ""]
    detail = sorted({m for by in board.scores.values() for m, s in by.items() if s.is_rule and " " in m})
    rows = []
    for method in detail:
        row = [method]
        for key in keys:
            entry = board.scores[key].get(method)
            row.append(
                ""
                if entry is None
                else f"{_fmt_value(entry.median)} / {_fmt_value(entry.worst)} "
                f"({entry.diverged}d {entry.stalled}s)"
            )
        rows.append(row)
    lines += [*_table(header, rows), ""]

    plt = _plt()
    # At most four panels a row: a report page is narrow.
    ncols = min(4, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.6 * ncols, 4.4 * nrows), layout="constrained", squeeze=False
    )
    for ax in axes.flat[len(keys) :]:
        ax.set_visible(False)
    methods = [*rules, *peers]
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
    lines += [f"![scoreboard]({_save(fig, out, 'gauntlet_scoreboard.png')})", ""]
    return lines


SECTIONS: dict[str, Callable[[Experiment, list[Record], Path], list[str]]] = {
    "demo": _lr0_robustness,
    "hparam_grid": _hparam_grid,
    "hparam_summary": _hparam_summary,
    "lr0_robustness": _lr0_robustness,
    "batch_robustness": _batch_robustness,
    "hypergrad_table": _hypergrad_table,
    "optimizer_comparison": _optimizer_comparison,
    "translation": _translation,
    "gauntlet": _gauntlet,
}


def _provenance(records: list[Record]) -> list[str]:
    budgets = sorted({_cfg(r, "budget") for r in records})
    sources = sorted(
        {
            f"{r['workload']['dataset']}: {r.get('data_source', '')} "
            f"({r['n_train']} train / {r['n_test']} test)"
            for r in records
        }
    )
    envs = sorted(
        {
            f"torch {r['environment']['torch']}, ntlr {r['environment']['ntlr']}, "
            f"git {str(r['environment'].get('git_sha'))[:10]}, {r['device']}"
            for r in records
        }
    )
    epochs = sorted({f"{r['workload']['name']}: {r['workload']['budget']['epochs']} epochs" for r in records})
    wall = sum(r["wall_time_s"] for r in records)
    outcomes = [outcome(r) for r in records]
    diverged, stalled = outcomes.count(Outcome.DIVERGED), outcomes.count(Outcome.STALLED)
    return [
        f"- runs: {len(records)} ({diverged} diverged, {stalled} stalled), budget: {', '.join(budgets)}; "
        f"{'; '.join(epochs)}",
        "- diverged: final training loss non-finite or above the initial one; stalled: above half of it",
        f"- data: {'; '.join(sources)}",
        f"- software: {'; '.join(envs)}",
        f"- total run time: {wall / 60:.1f} min",
    ]


def write_report(
    experiment: Experiment,
    records: list[Record],
    out_dir: str | os.PathLike,
    *,
    command: str = "",
    planned: int | None = None,
) -> Path:
    """Write ``README.md`` and figures for ``experiment`` into ``out_dir``; return the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {experiment.name}: {experiment.description}", "", f"Reproduces: {experiment.paper}.", ""]
    if command:
        lines += ["Made by:", "", "```", command, "```", ""]
    if not records:
        lines += [
            "No run records were found for this experiment."
            + (
                ""
                if experiment.runnable_here
                else " It needs data and GPUs this machine lacks; "
                "the spec is runnable with `ntlr-bench sweep " + experiment.name + " --budget paper`."
            ),
            "",
        ]
    else:
        lines += _provenance(records)
        if planned is not None and planned != len(records):
            lines.append(f"- **partial**: {len(records)} of the grid's {planned} runs had finished")
        lines.append("")
        differences = list(experiment.differences)
        if any(_cfg(r, "budget") == "cpu" for r in records):
            differences = list(experiment.cpu_differences) + differences
        if differences:
            lines += ["Where this setup differs from the paper's:", ""]
            lines += [f"- {d}" for d in differences] + [""]
        section = SECTIONS.get(experiment.name)
        if section is not None:
            lines += section(experiment, records, out)
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
