"""Learning-rate schedules a bench run can put on its optimizer (``--set schedule=cosine``).

The protocols users wrap an optimizer in, so that TLR under a user's schedule (and a plain optimizer
under the same one) is measured the way users run it. The runner steps the scheduler after every
optimizer step, so every schedule is laid out over the run's ``total_steps``.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import torch

__all__ = [
    "SCHEDULED_INNER",
    "WARMUP_FRACTION",
    "Schedule",
    "make_scheduler",
    "parse_schedule",
    "pop_schedule",
]

# The Transformers Trainer's warm-up is a user's choice; a tenth of the run is a common one.
WARMUP_FRACTION = 0.1


# The inner optimizers the schedules experiment runs, TLR around each and each alone: (the gauntlet's label
# of the inner optimizer, TLR's registry entry, the plain one's). The grid and its report both read it.
SCHEDULED_INNER: tuple[tuple[str, str, str], ...] = (
    ("SGD m0.9", "tlr_sgd", "sgd"),
    ("AdamW", "tlr_adamw", "adamw"),
)


class Schedule(str, Enum):
    """A schedule over the whole run, by the name ``--set schedule=...`` takes."""

    COSINE = "cosine"  # CosineAnnealingLR from the run's lr to 0
    WARMUP_COSINE = "warmup_cosine"  # linear warm-up over WARMUP_FRACTION, then cosine to 0
    ONECYCLE = "onecycle"  # OneCycleLR with max_lr = the run's lr, momentum not cycled
    MULTISTEP = "multistep"  # ×0.1 at 50 % and 75 % of the steps (the paper's sgd-mstep)


def parse_schedule(value: object) -> Schedule:
    """``value`` as a :class:`Schedule`; a clear error naming ``schedule`` otherwise."""
    try:
        return Schedule(value)
    except ValueError:
        names = ", ".join(s.value for s in Schedule)
        raise ValueError(f"schedule must be one of {names}, got {value!r}") from None


def pop_schedule(overrides: dict[str, Any]) -> Schedule | None:
    """Take ``schedule`` out of a builder's overrides (what is left goes to the optimizer)."""
    return parse_schedule(overrides.pop("schedule")) if "schedule" in overrides else None


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule | None, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``schedule`` on ``optimizer`` (a TLR included: it schedules the lr TLR's factor multiplies), laid
    out over ``total_steps`` optimizer steps; ``None`` for no schedule."""
    if schedule is None:
        return None
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    if schedule is Schedule.COSINE:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if schedule is Schedule.WARMUP_COSINE:
        warmup = max(1, round(WARMUP_FRACTION * total_steps))

        def warmup_cosine(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
    if schedule is Schedule.ONECYCLE:
        max_lr = [group["lr"] for group in optimizer.param_groups]
        # +1: the runner steps the scheduler after the last optimizer step too, which OneCycleLR counts.
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total_steps + 1, cycle_momentum=False
        )
    milestones = sorted({max(1, int(0.5 * total_steps)), max(1, int(0.75 * total_steps))})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
