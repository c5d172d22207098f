"""Means and spreads as the reports print them: "mean ± std", how many runs, and against the paper's."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable

__all__ = ["Stats", "against", "fmt_ms", "mean_std", "n_phrase", "over_rates"]

# (mean, population std, n finite, n non-finite)
Stats = tuple[float, float, int, int]


def mean_std(values: Iterable[float]) -> Stats:
    """(mean, population std, n finite, n non-finite), the paper's "mean ± std" over a grid."""
    values = list(values)
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0, len(values)
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
    return mean, std, len(finite), len(values) - len(finite)


def _digits_for(std: float, digits: int) -> int:
    """``digits``, or more where the spread would print as zero: enough for its first significant digit."""
    if std > 0 and round(std, digits) == 0:
        return -math.floor(math.log10(std))
    return digits


def fmt_ms(stats: Stats, digits: int = 3) -> str:
    """ "mean ± std", or "value (n = 1)" for a single run, whose spread is unknown rather than zero.

    A spread below the printed precision gets the digits it needs (0.0093 ± 0.0004, not 0.009 ± 0.000);
    runs that agree exactly print ± 0.
    """
    mean, std, n, bad = stats
    if not math.isfinite(mean):
        text = "–"
    elif n == 1:
        text = f"{mean:.{digits}f} (n = 1)"
    elif std == 0:
        text = f"{mean:.{digits}f} ± 0"
    else:
        shown = _digits_for(std, digits)
        text = f"{mean:.{shown}f} ± {std:.{shown}f}"
    return text + (f" ({bad} diverged)" if bad else "")


def n_phrase(groups: Iterable[Collection[object]], unit: str) -> str:
    """ "n = 3 seeds" when every group has 3 members, "n = 2–3 seeds" when they differ (``unit``: "seed")."""
    sizes = sorted({len(g) for g in groups}) or [0]
    count = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
    return f"n = {count} {unit}{'' if count == '1' else 's'}"


def over_rates(by_rate: Iterable[list[float]]) -> tuple[Stats, float]:
    """The paper's "mean ± std across the learning rates", each rate's value the mean over its seeds;
    and the largest std over seeds at one rate (NaN when every rate ran one seed)."""
    per_rate = [mean_std(v) for v in by_rate]
    stats = mean_std(m for m, _, _, _ in per_rate)
    bad = sum(b for _, _, _, b in per_rate)
    seed_std = max((sd for _, sd, n, _ in per_rate if n > 1), default=math.nan)
    return (stats[0], stats[1], stats[2], bad), seed_std


def against(ours: float, paper: tuple[float, float]) -> str:
    mean, std = paper
    if abs(ours - mean) <= std:
        return f"{ours:.3f} against {mean:.3f}: within the paper's ± {std:.3f}"
    side = "below" if ours < mean else "above"
    return f"{ours:.3f} against {mean:.3f}: {side} the paper's mean by more than its ± {std:.3f}"
