"""The trained rates in TensorBoard: ``write_scalars(writer, optimizer, step)`` after ``optimizer.step()``.

Takes any writer with ``add_scalar(tag, value, step)`` (``torch.utils.tensorboard.SummaryWriter``,
``tensorboardX``'s); nothing is imported here, so TensorBoard need not be installed to import it.
"""

from __future__ import annotations

from typing import Protocol

from .metrics import find_tlr, tlr_metrics

__all__ = ["write_scalars"]


class ScalarWriter(Protocol):
    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> object: ...


def write_scalars(writer: ScalarWriter, optimizer: object, step: int, prefix: str = "tlr/") -> None:
    """Write :func:`ntlr.integrations.metrics.tlr_metrics` of ``optimizer`` (a TLR, or a wrapper of one)
    to ``writer`` at ``step``."""
    tlr = find_tlr(optimizer)
    if tlr is None:
        raise TypeError(f"optimizer must be an ntlr.TLR or wrap one, got {type(optimizer).__name__}")
    if not callable(getattr(writer, "add_scalar", None)):
        raise TypeError(f"writer must have an add_scalar method, got {type(writer).__name__}")
    for tag, value in tlr_metrics(tlr, prefix).items():
        writer.add_scalar(tag, value, step)
