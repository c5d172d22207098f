"""TLR (the paper's method) around the benchmark's SGD, Adam and AdamW."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from ntlr import TLR

from .schedules import make_scheduler, pop_schedule
from .spec import BuiltOptimizer, OptimizerSpec
from .standard import ADAM_HYPERPARAMETERS, SGD_HYPERPARAMETERS, make_adam, make_adamw, make_sgd

__all__ = ["SPECS", "WINDOW_HYPERPARAMETERS", "split_window_overrides", "tlr_built", "window_kwargs"]

# The K-step window: K = round(p * steps_per_epoch) unless update_every gives K in steps.
WINDOW_HYPERPARAMETERS = ("p", "update_every", "max_factor")
# rule: a name from ntlr.RULES ("paper", "robust"); loss_guard: TLR's opt-in safeguard
# (docs/safeguards.md); anneal: TLR(total_steps=the run's budget), the decay over its last fifth; sketch:
# TLR's low-memory mode (window buffers over every sketch-th coordinate); schedule: a user's schedule on
# the lr TLR's factor multiplies (schedules.Schedule). The runner feeds each step's loss whenever the
# optimizer reads it.
TLR_HYPERPARAMETERS = (*WINDOW_HYPERPARAMETERS, "gamma", "rule", "loss_guard", "anneal", "sketch", "schedule")


def split_window_overrides(overrides: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """Pop the wrapper's keys out of ``overrides`` (what is left goes to the inner optimizer)."""
    return {key: overrides.pop(key) for key in keys if key in overrides}


def window_kwargs(wrapper: dict[str, Any], steps_per_epoch: int) -> dict[str, Any]:
    """TLR takes exactly one of update_every and steps_per_epoch; p only matters with the latter."""
    if "update_every" in wrapper:
        wrapper.pop("p", None)
        return wrapper
    return {**wrapper, "steps_per_epoch": steps_per_epoch}


def tlr_built(
    optimizer: TLR, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
) -> BuiltOptimizer:
    return BuiltOptimizer(
        optimizer,
        scheduler,
        optimizer.get_lr,
        extra_state=lambda: [record.as_dict() for record in optimizer.history],
    )


def _tlr_builder(make_inner: Callable[[Iterable[Any], float, dict[str, Any]], Optimizer]):
    def build(
        params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
    ) -> BuiltOptimizer:
        wrapper = split_window_overrides(overrides, TLR_HYPERPARAMETERS)
        schedule = pop_schedule(wrapper)
        if wrapper.pop("anneal", False):
            wrapper["total_steps"] = total_steps
        inner = make_inner(params, lr, overrides)
        with warnings.catch_warnings():
            # The rule's longer window is the bench's setting, not a user's slip: every record keeps the
            # window in use (its history's window_steps), and a sweep would print this once per run.
            warnings.filterwarnings(
                "ignore", message=r"TLR: the rule .* uses windows of", category=RuntimeWarning
            )
            tlr = TLR(inner, **window_kwargs(wrapper, steps_per_epoch))
        return tlr_built(tlr, make_scheduler(tlr, schedule, total_steps))

    return build


SPECS = (
    OptimizerSpec(
        name="tlr_sgd",
        description="TLR (the library's default p and γ) around SGD, momentum 0.8",
        build=_tlr_builder(make_sgd),
        default_lr=0.1,
        hyperparameters=(*TLR_HYPERPARAMETERS, *SGD_HYPERPARAMETERS),
    ),
    OptimizerSpec(
        name="tlr_adam",
        description="TLR (Newton-based trainable lr, the library's default p and γ) around Adam",
        build=_tlr_builder(make_adam),
        default_lr=1e-3,
        hyperparameters=(*TLR_HYPERPARAMETERS, *ADAM_HYPERPARAMETERS),
    ),
    OptimizerSpec(
        name="tlr_adamw",
        description="TLR (the library's default rule) around AdamW (decoupled weight decay 0.01)",
        build=_tlr_builder(make_adamw),
        default_lr=1e-3,
        hyperparameters=(*TLR_HYPERPARAMETERS, *ADAM_HYPERPARAMETERS),
    ),
)
