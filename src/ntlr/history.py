"""The record TLR keeps of each meta-step."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .functional import MetaStepDecision, Status


@dataclass(frozen=True)
class MetaStepRecord:
    """One meta-step of one param group.

    ``step`` is the group's count of steps taken, ``a = <u_old, u_new>`` and ``b = <u_old, u_old>`` are
    the window inner products, ``factor`` the multiplier applied (1.0 when skipped), ``lr`` the group's
    effective rate after it, and ``status`` one of ``updated``, ``capped`` (the factor hit
    ``max_factor``), ``first_window`` (no previous window yet), ``nonpositive_denominator`` (b - a <= 0:
    the Newton step is undefined, the rate is kept), ``nonfinite`` (the model diverged) or, with
    ``TLR(loss_guard=True)`` only, ``loss_guard`` (the window's mean loss rose and the guard overruled
    the rule: ``factor`` is then at most 1; see :func:`ntlr.functional.guarded_factor`). ``skipped`` is
    true when the rate was left unchanged by the rule's own choice (not for ``loss_guard``).
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
