"""Plain ``torch.optim`` baselines: SGD, SGD with the paper's multi-step decay (sgd-mstep), Adam, AdamW."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from .schedules import Schedule, make_scheduler, pop_schedule
from .spec import BuiltOptimizer, OptimizerSpec, group_lrs

__all__ = ["ADAMW_DEFAULTS", "ADAM_DEFAULTS", "SGD_DEFAULTS", "SPECS", "make_adam", "make_adamw", "make_sgd"]

# The authors' training script (georgeretsi/NTLR, train.py) runs every SGD variant, TLR's inner one
# included, with momentum 0.8 and weight decay 5e-4, and Adam with torch's defaults.
SGD_DEFAULTS: dict[str, Any] = {"momentum": 0.8, "weight_decay": 5e-4, "nesterov": False}
ADAM_DEFAULTS: dict[str, Any] = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
SGD_HYPERPARAMETERS = tuple(SGD_DEFAULTS)
ADAM_HYPERPARAMETERS = tuple(ADAM_DEFAULTS)
# torch's AdamW defaults (decoupled weight decay 0.01).
ADAMW_DEFAULTS: dict[str, Any] = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}


def make_sgd(params: Iterable[Any], lr: float, overrides: dict[str, Any]) -> torch.optim.SGD:
    """The benchmark's SGD: the authors' defaults, with ``overrides`` from SGD_HYPERPARAMETERS on top."""
    return torch.optim.SGD(params, lr=lr, **{**SGD_DEFAULTS, **overrides})


def make_adam(params: Iterable[Any], lr: float, overrides: dict[str, Any]) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, **{**ADAM_DEFAULTS, **overrides})


def make_adamw(params: Iterable[Any], lr: float, overrides: dict[str, Any]) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, **{**ADAMW_DEFAULTS, **overrides})


def _plain_builder(make: Callable[[Iterable[Any], float, dict[str, Any]], torch.optim.Optimizer]):
    """A registry builder for ``make``'s optimizer, under the ``schedule`` override if one is given."""

    def build(params, *, lr, steps_per_epoch, total_steps, **overrides) -> BuiltOptimizer:
        schedule = pop_schedule(overrides)
        optimizer = make(params, lr, overrides)
        return BuiltOptimizer(
            optimizer, make_scheduler(optimizer, schedule, total_steps), group_lrs(optimizer)
        )

    return build


def _build_sgd_mstep(params, *, lr, steps_per_epoch, total_steps, **overrides) -> BuiltOptimizer:
    # The paper decays by 0.1 at 50% and 75% of the epochs; the runner steps the scheduler every
    # optimizer step, so the milestones are the same fractions of the total steps.
    optimizer = make_sgd(params, lr, overrides)
    return BuiltOptimizer(
        optimizer, make_scheduler(optimizer, Schedule.MULTISTEP, total_steps), group_lrs(optimizer)
    )


SPECS = (
    OptimizerSpec(
        name="sgd",
        description="SGD, constant lr (momentum 0.8, weight decay 5e-4 as in the authors' script)",
        build=_plain_builder(make_sgd),
        default_lr=0.1,
        hyperparameters=(*SGD_HYPERPARAMETERS, "schedule"),
    ),
    OptimizerSpec(
        name="sgd_mstep",
        description="SGD with the lr divided by 10 at 50% and 75% of the total steps (the paper's sgd-mstep)",
        build=_build_sgd_mstep,
        default_lr=0.1,
        hyperparameters=SGD_HYPERPARAMETERS,
    ),
    OptimizerSpec(
        name="adam",
        description="Adam, constant lr",
        build=_plain_builder(make_adam),
        default_lr=1e-3,
        hyperparameters=(*ADAM_HYPERPARAMETERS, "schedule"),
    ),
    OptimizerSpec(
        name="adamw",
        description="AdamW, constant lr, decoupled weight decay 0.01 (torch's defaults)",
        build=_plain_builder(make_adamw),
        default_lr=1e-3,
        hyperparameters=(*ADAM_HYPERPARAMETERS, "schedule"),
    ),
)
