"""Picking records by what they ran: a config value, a group of them, a final number."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..outcome import Outcome, outcome
from ..records import RunRecord

__all__ = ["config_value", "final_loss", "final_metric", "group_by", "select", "values"]


def config_value(record: RunRecord, key: str, default: Any = None) -> Any:
    """What ``record`` ran with for ``key``: a RunConfig field, else an optimizer override.

    ``batch_size`` is the one trained with (the config leaves it None for the workload's own).
    """
    if key == "batch_size":
        return record["batch_size"]
    config = record["config"]
    if key in config and key != "overrides":
        return config[key]
    return config.get("overrides", {}).get(key, default)


def _matches(value: Any, wanted: Any) -> bool:
    # 1/3 written in a grid and read back from JSON is the same number only to rounding.
    if isinstance(wanted, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return math.isclose(value, wanted, rel_tol=1e-9)
    return bool(value == wanted)


def select(records: Iterable[RunRecord], **config: Any) -> list[RunRecord]:
    """The records that ran with every ``key=value`` of ``config`` (see ``config_value``)."""
    return [r for r in records if all(_matches(config_value(r, k), v) for k, v in config.items())]


def group_by(records: Iterable[RunRecord], *keys: str) -> dict[Any, list[RunRecord]]:
    """Records grouped by their values of ``keys`` (one key: the value; several: a tuple), in the order
    each group first appears."""
    groups: dict[Any, list[RunRecord]] = {}
    for r in records:
        found = tuple(config_value(r, k) for k in keys)
        groups.setdefault(found[0] if len(keys) == 1 else found, []).append(r)
    return groups


def values(records: Iterable[RunRecord], key: str, *, reverse: bool = False) -> list[Any]:
    """The distinct values of ``key`` over ``records``, sorted."""
    return sorted({config_value(r, key) for r in records}, reverse=reverse)


def final_loss(record: RunRecord) -> float:
    """Final training loss; a diverged run (see ``outcome``) has none (NaN) and is counted separately."""
    return final_metric(record, "train_loss")


def final_metric(record: RunRecord, key: str) -> float:
    if outcome(record) is Outcome.DIVERGED:
        return math.nan
    return float(record.get("final", {}).get(key, math.nan))
