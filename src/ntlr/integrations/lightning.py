"""``TLRMonitor``: a Lightning callback logging each TLR's trained rates through the module's loggers.

Lightning's ``LearningRateMonitor`` logs ``param_groups[i]["lr"]``, the scheduled rate; this logs the rate
:class:`ntlr.TLR` uses and the meta-step status counts (:func:`ntlr.integrations.metrics.tlr_metrics`)
after every optimizer step, at the step Lightning's own logging uses::

    trainer = pl.Trainer(callbacks=[TLRMonitor()], log_every_n_steps=10)
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from .metrics import find_tlr, tlr_metrics

__all__ = ["TLRMonitor"]


class TLRMonitor(pl.Callback):
    """Log ``tlr/lr_group{i}`` and ``tlr/{status}`` of every TLR the trainer steps (prefixed
    ``tlr/opt{j}/`` when there are several), every ``log_every_n_steps`` optimizer steps."""

    def __init__(self) -> None:
        self._last_step = -1

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # Set in Trainer.__init__ but not declared on the class; 0 turns logging off.
        every = int(getattr(trainer, "log_every_n_steps", 50))
        # With gradient accumulation several batches end on one optimizer step: log it once.
        if every <= 0 or step == self._last_step or step % every != 0:
            return
        self._last_step = step
        tlrs = [tlr for tlr in map(find_tlr, trainer.optimizers) if tlr is not None]
        metrics: dict[str, float] = {}
        for j, tlr in enumerate(tlrs):
            metrics.update(tlr_metrics(tlr, "tlr/" if len(tlrs) == 1 else f"tlr/opt{j}/"))
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
