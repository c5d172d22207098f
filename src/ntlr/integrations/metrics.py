"""What the integrations log: each param group's effective rate and the meta-step status counts."""

from __future__ import annotations

from collections import Counter

from ..functional import Status
from ..tlr import TLR

__all__ = ["find_tlr", "tlr_metrics"]

# Wrappers found around an optimizer (LightningOptimizer, Accelerate's AcceleratedOptimizer) keep it in
# ``.optimizer``; a bound keeps a self-referencing object from looping.
_MAX_WRAPPERS = 8


def find_tlr(optimizer: object) -> TLR | None:
    """``optimizer`` if it is a :class:`ntlr.TLR`, else the TLR it wraps (through ``.optimizer``), else
    None."""
    for _ in range(_MAX_WRAPPERS):
        if isinstance(optimizer, TLR):
            return optimizer
        optimizer = getattr(optimizer, "optimizer", None)
        if optimizer is None:
            return None
    return None


def tlr_metrics(optimizer: TLR, prefix: str = "tlr/") -> dict[str, float]:
    """``{prefix}lr_group{i}``: group ``i``'s effective rate (``optimizer.get_lr()[i]``), and
    ``{prefix}{status}``: how many meta-steps so far ended with each :class:`ntlr.Status` (every status
    is present, so a logger sees the same keys at every step)."""
    if not isinstance(optimizer, TLR):
        raise TypeError(f"optimizer must be an ntlr.TLR, got {type(optimizer).__name__}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    metrics = {f"{prefix}lr_group{i}": rate for i, rate in enumerate(optimizer.get_lr())}
    counts = Counter(record.status for record in optimizer.history)
    metrics.update({f"{prefix}{status.value}": float(counts[status]) for status in Status})
    return metrics
