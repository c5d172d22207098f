"""How a run ended: trained (OK), went nowhere (STALLED), or got worse than it started (DIVERGED).

The runner stops a run whose loss turns non-finite and records that as ``diverged``; a run whose loss stays
finite but ends above where it began has diverged just as surely (on digits, a final loss of 33 where the
first was 2.3 is fourteen times chance), and every count of divergence in the reports uses this function.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["Outcome", "final_train_loss", "initial_loss", "last_epoch_loss", "outcome"]


class Outcome(enum.Enum):
    OK = "ok"
    STALLED = "stalled"  # final training loss above half the initial one, but not above it
    DIVERGED = "diverged"  # final training loss non-finite, or above the initial one


def initial_loss(record: Mapping[str, Any]) -> float:
    """The training loss before training: an evaluation at step 0 if the record has one, else the first
    step's loss (NaN when the run took no step)."""
    evals = record.get("evals") or []
    if evals and evals[0].get("step") == 0 and "train_loss" in evals[0]:
        return float(evals[0]["train_loss"])
    steps = record.get("step_loss") or []
    return float(steps[0]) if steps else math.nan


def final_train_loss(record: Mapping[str, Any]) -> float:
    """The training loss the run ended at: its last evaluation's, or, for a workload that does not evaluate
    on training data, the mean step loss over its last epoch. NaN for a run the runner stopped as non-finite.
    """
    if record.get("diverged"):
        return math.nan
    final = record.get("final") or {}
    if "train_loss" in final:
        return float(final["train_loss"])
    return last_epoch_loss(record)


def last_epoch_loss(record: Mapping[str, Any]) -> float:
    """The mean step loss over the run's last epoch (NaN when it took no step); a record whose curves were
    thinned (see ``records.thin_record``) carries it from the full curve."""
    thinned = record.get("thinned")
    if thinned:
        return float(thinned["last_epoch_loss"])
    steps = record.get("step_loss") or []
    if not steps:
        return math.nan
    window = steps[-max(1, int(record.get("steps_per_epoch") or 1)) :]
    return math.fsum(float(v) for v in window) / len(window)


def outcome(record: Mapping[str, Any]) -> Outcome:
    """DIVERGED if the final training loss is non-finite or above the initial one, STALLED if it is above
    half the initial one, else OK. A run with no initial loss (no step taken) is judged on finiteness only.
    """
    final = final_train_loss(record)
    if not math.isfinite(final):
        return Outcome.DIVERGED
    initial = initial_loss(record)
    if not math.isfinite(initial):
        return Outcome.OK
    if final > initial:
        return Outcome.DIVERGED
    if final > initial / 2:
        return Outcome.STALLED
    return Outcome.OK
