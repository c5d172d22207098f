"""``TLRLogCallback``: the trained rates in a Transformers ``Trainer``'s logs.

The ``Trainer`` logs ``learning_rate``, the scheduled rate; this adds the rate :class:`ntlr.TLR` uses and
the meta-step status counts (:func:`ntlr.integrations.metrics.tlr_metrics`) to every training log, and so
to ``trainer.state.log_history`` and the reporters (TensorBoard, W&B, ...). The reporters named in
``report_to`` are called before callbacks passed to the ``Trainer``, so put it first::

    trainer = Trainer(model, args, train_dataset=data, optimizers=(tlr, None))
    TLRLogCallback.add_first(trainer)
"""

from __future__ import annotations

from typing import Any

import transformers

from .metrics import find_tlr, tlr_metrics

__all__ = ["TLRLogCallback"]


class TLRLogCallback(transformers.TrainerCallback):
    """Add ``tlr/lr_group{i}`` and ``tlr/{status}`` to each log of a ``Trainer`` whose optimizer is (or
    wraps) a TLR; evaluation logs (no ``loss`` entry) are left alone."""

    @classmethod
    def add_first(cls, trainer: transformers.Trainer) -> TLRLogCallback:
        """Put a new instance first among ``trainer``'s callbacks, before its reporters, and return it."""
        callback = cls()
        trainer.callback_handler.callbacks.insert(0, callback)
        return callback

    def on_log(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        tlr = find_tlr(kwargs.get("optimizer"))
        if tlr is None or logs is None or "loss" not in logs:
            return
        metrics = tlr_metrics(tlr)
        logs.update(metrics)
        # The Trainer stored a copy of these logs in its history just before calling on_log.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)
