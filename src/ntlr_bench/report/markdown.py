"""Markdown pieces the sections share: tables and how a rate or a value is written."""

from __future__ import annotations

import math

__all__ = ["fmt_value", "lr_label", "table"]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def lr_label(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def fmt_value(value: float) -> str:
    return "∞" if math.isinf(value) else ("–" if math.isnan(value) else f"{value:.3g}")
