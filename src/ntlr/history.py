"""The record TLR keeps of each meta-step."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .functional import MetaStepDecision, Status


@dataclass(frozen=True)
class MetaStepRecord:
    """One meta-step of one param group.

    ``step`` is the group's count of steps taken, ``a = <u_old, u_new>`` and ``b = <u_old, u_old>``
    (``c = <u_new, u_new>``) are the window inner products, ``factor`` the multiplier applied, ``lr`` the
    group's effective rate after it, and ``status`` (:class:`ntlr.Status`) why: ``updated``, ``capped``
    (the factor hit a cap), ``first_window`` (no previous window yet), ``nonpositive_denominator`` (b - a
    <= 0: the Newton step is undefined; the paper's rule keeps the rate, :class:`ntlr.RobustRule` reads
    the loss and may raise or lower it), ``nonfinite`` (the model diverged), ``loss_guard`` (the window's
    loss rose and the guard, or RobustRule's creep test, lowered the rate: ``factor`` at most 1; see
    :func:`ntlr.functional.guarded_factor`), ``rollback`` (the window's weights were restored and the rate
    cut), ``schedule_hold`` (a schedule has the rate below its peak and the rule's step was held) or
    ``plateau`` (RobustRule's opt-in progress gate cut the rate). ``skipped`` is true when the rate was
    left as it was for want of a decision (``first_window``, ``nonpositive_denominator`` or ``nonfinite``
    with a factor of 1).
    ``window_steps`` is the closed window's length in counted steps: the K in use, which a rule may make
    longer than ``update_every`` (:class:`ntlr.RobustRule`: the inner optimizer's momentum horizon; 0 in
    records made before it was kept).
    """

    step: int
    group: int
    a: float
    b: float
    factor: float
    lr: float
    status: Status
    c: float = math.nan
    window_steps: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def skipped(self) -> bool:
        return MetaStepDecision(self.factor, self.status).skipped

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}
