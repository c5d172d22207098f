"""Lightning callbacks: ``TLRMonitor`` logs each TLR's trained rates through the module's loggers;
``TLRBudget`` hands each TLR the trainer's budget, so the rate is decayed at the end (``total_steps``).

Lightning's ``LearningRateMonitor`` logs ``param_groups[i]["lr"]``, the scheduled rate; this logs the rate
:class:`ntlr.TLR` uses and the meta-step status counts (:func:`ntlr.integrations.metrics.tlr_metrics`)
after every optimizer step, at the step Lightning's own logging uses::

    trainer = pl.Trainer(callbacks=[TLRMonitor(), TLRBudget()], log_every_n_steps=10)
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning.pytorch as pl

from ..tlr import _check_anneal
from .metrics import find_tlr, tlr_metrics

__all__ = ["TLRBudget", "TLRMonitor"]


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


class TLRBudget(pl.Callback):
    """When fitting starts, hand every TLR the trainer steps its budget,
    ``trainer.estimated_stepping_batches`` optimizer steps (:meth:`ntlr.TLR.set_total_steps`): the rate
    is trained, then decayed linearly to 0 over the last ``anneal_fraction`` of the run. With the
    budget known the default rule also holds its rate through progress and spikes that it would
    otherwise cut (the long-horizon tier's medians: 0.66-0.96x the final training loss without it;
    docs/rules.md).

    Left as they are: a TLR with a ``total_steps`` of its own; every TLR when the trainer has a learning
    rate scheduler (its decay and TLR's would compound) or no finite budget (``max_epochs=-1`` without
    ``max_steps``), with a warning saying which.
    """

    def __init__(self, anneal_fraction: float = 0.2) -> None:
        _check_anneal(None, anneal_fraction)  # TLR's own check, at construction rather than at fit
        self.anneal_fraction = float(anneal_fraction)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        tlrs = [tlr for tlr in map(find_tlr, trainer.optimizers) if tlr is not None]
        if not tlrs:
            return
        if trainer.lr_scheduler_configs:
            warnings.warn(
                "TLRBudget: the trainer has a learning rate scheduler, whose decay TLR's would compound; "
                "no total_steps set (TLR holds its climbs under a decaying schedule by itself)",
                stacklevel=2,
            )
            return
        budget = trainer.estimated_stepping_batches
        if not math.isfinite(budget):
            warnings.warn(
                "TLRBudget: the trainer has no finite budget (max_epochs=-1 without max_steps); "
                "no total_steps set",
                stacklevel=2,
            )
            return
        for tlr in tlrs:
            if tlr.total_steps is None:
                tlr.set_total_steps(int(budget), self.anneal_fraction)
