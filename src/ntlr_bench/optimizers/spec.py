"""A registry entry (:class:`OptimizerSpec`) and what building one returns (:class:`BuiltOptimizer`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "BuiltOptimizer",
    "OptimizerSpec",
    "as_param_list",
    "check_in_unit_interval",
    "check_positive",
    "group_lrs",
    "require_package",
]


@dataclass
class BuiltOptimizer:
    """An optimizer ready for the runner, with what the run record needs to follow its rate."""

    optimizer: torch.optim.Optimizer
    # The runner calls scheduler.step() after every optimizer step, so milestones are in steps.
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    # The current effective lr of each param group (after any trained factor, d-estimate or schedule).
    lr_getter: Callable[[], list[float]]
    extra_state: Callable[[], Any] | None = None


@dataclass(frozen=True)
class OptimizerSpec:
    """One entry of the registry: how to build an optimizer and how the runner must drive it."""

    name: str
    description: str
    build: Callable[..., BuiltOptimizer]  # build(params, *, lr, steps_per_epoch, total_steps, **overrides)
    default_lr: float  # a sensible initial lr (or scale, for the learning-rate-free methods)
    needs_closure: bool = False  # step(closure): closure zeroes grads, runs forward+backward, returns loss
    has_train_eval: bool = False  # optimizer.train() before training steps, optimizer.eval() before eval
    package: str | None = None  # the PyPI package it needs, if any
    hyperparameters: tuple[str, ...] = ()  # the names build accepts in **overrides


def group_lrs(optimizer: torch.optim.Optimizer, key: str = "lr") -> Callable[[], list[float]]:
    """An lr_getter reading ``group[key]`` of each param group."""
    return lambda: [float(group[key]) for group in optimizer.param_groups]


def require_package(import_name: str, package: str) -> Any:
    """Import an optional peer package, or say which pip package provides it."""
    import importlib

    try:
        return importlib.import_module(import_name)
    except ImportError as error:
        raise ImportError(
            f"this optimizer needs the PyPI package {package!r} (pip install {package}, or the "
            f"'bench' extra: pip install 'ntlr[bench]')"
        ) from error


def check_positive(name: str, value: object) -> float:
    """A positive finite real, or ValueError naming the argument."""
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return number


def check_in_unit_interval(name: str, value: object, *, closed: bool = False) -> float:
    """A real in (0, 1) (or (0, 1] with ``closed``), or ValueError naming the argument."""
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not (0 < number <= 1 if closed else 0 < number < 1):
        interval = "(0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{name} must be a real number in {interval}, got {value!r}")
    return number


def as_param_list(params: Iterable[Any]) -> list[Any]:
    """Materialise ``params`` (tensors or group dicts) so two consumers can share it."""
    params = list(params)
    if not params:
        raise ValueError("params is empty: the model has no parameters to optimize")
    return params
