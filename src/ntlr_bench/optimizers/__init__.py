"""The optimizer registry of ntlr-bench: every method the paper compares, and the learning-rate-free peers.

``OPTIMIZERS`` maps a name to an :class:`OptimizerSpec`; :func:`build_optimizer` validates the arguments
and builds one. Importing this package needs only torch and ntlr: the optional peer packages are
imported when their entry is built.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from . import hd, hypergrad_window, mechanic, peers, sls, sps, standard, trainable
from .spec import BuiltOptimizer, OptimizerSpec, as_param_list

__all__ = ["OPTIMIZERS", "BuiltOptimizer", "OptimizerSpec", "build_optimizer"]


def _registry(*families: tuple[OptimizerSpec, ...]) -> dict[str, OptimizerSpec]:
    registry: dict[str, OptimizerSpec] = {}
    for family in families:
        for spec in family:
            if spec.name in registry:
                raise RuntimeError(f"two optimizer specs are named {spec.name!r}")
            registry[spec.name] = spec
    return registry


OPTIMIZERS: dict[str, OptimizerSpec] = _registry(
    standard.SPECS,
    trainable.SPECS,
    hypergrad_window.SPECS,
    hd.SPECS,
    sls.SPECS,
    sps.SPECS,
    peers.SPECS,
    mechanic.SPECS,
)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def build_optimizer(
    name: str,
    params: Iterable[Any],
    *,
    lr: float,
    steps_per_epoch: int,
    total_steps: int,
    **overrides: Any,
) -> tuple[OptimizerSpec, BuiltOptimizer]:
    """Build the registry entry ``name`` on ``params`` (tensors or param-group dicts).

    Args:
        name: a key of :data:`OPTIMIZERS`.
        params: the parameters, or param-group dicts.
        lr: the initial learning rate (for the learning-rate-free methods, the scale on their estimate).
        steps_per_epoch: optimizer steps per epoch (TLR's K = p * steps_per_epoch; SLS/SPS's b/n).
        total_steps: optimizer steps in the whole run (sgd_mstep's milestones, Schedule-Free's warm-up).
        **overrides: hyperparameters from ``OPTIMIZERS[name].hyperparameters``.

    Returns:
        The spec (how to drive the optimizer) and the built optimizer with its scheduler and lr getter.
    """
    spec = OPTIMIZERS.get(name)
    if spec is None:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    unknown = sorted(set(overrides) - set(spec.hyperparameters))
    if unknown:
        accepted = ", ".join(spec.hyperparameters) or "none"
        raise ValueError(
            f"optimizer {name!r} does not take the override(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {accepted}"
        )
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    steps_per_epoch = _check_count("steps_per_epoch", steps_per_epoch)
    total_steps = _check_count("total_steps", total_steps)
    try:
        built = spec.build(
            as_param_list(params),
            lr=float(lr),
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            **overrides,
        )
    except TypeError as exc:
        if not overrides:
            raise  # not the user's settings: a bug, with its traceback
        # A setting of the wrong type (--set momentum='"x"') reaches the optimizer's own comparisons, whose
        # message names neither the setting nor what it should be.
        raise ValueError(_blame(spec, overrides, steps_per_epoch, total_steps, exc)) from exc
    return spec, built


def _kind(value: object) -> str | None:
    """What a setting is, in the words of an error message; None for None (a default that says nothing)."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, numbers.Real):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"  # --set betas=[0.9,0.99] reads as a list where the default is a tuple
    return None


def _quiet_build(
    spec: OptimizerSpec, steps_per_epoch: int, total_steps: int, overrides: dict[str, Any]
) -> BuiltOptimizer:
    """``spec`` built on a throwaway parameter (a probe: its warnings are not the run's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        param = torch.zeros(1, requires_grad=True)
        return spec.build(
            [param], lr=spec.default_lr, steps_per_epoch=steps_per_epoch, total_steps=total_steps, **overrides
        )


def _defaults(spec: OptimizerSpec, steps_per_epoch: int, total_steps: int) -> dict[str, Any]:
    """The settings ``spec`` builds with when given none, as its torch optimizer keeps them (a wrapper such
    as TLR shows its inner optimizer's); empty when that cannot be told."""
    try:
        built = _quiet_build(spec, steps_per_epoch, total_steps, {})
    except Exception:  # only a more precise message is lost: the caller falls back
        return {}
    return dict(getattr(built.optimizer, "defaults", {}))


def _wrong_kinds(
    spec: OptimizerSpec, overrides: dict[str, Any], steps_per_epoch: int, total_steps: int
) -> list[str]:
    """A line for each setting of another kind than its default (a string for a number)."""
    defaults = _defaults(spec, steps_per_epoch, total_steps)
    return [
        f"--set {key}={value!r}: expected {_kind(defaults[key])} "
        f"(the optimizer's default is {defaults[key]!r})"
        for key, value in overrides.items()
        if key in defaults and _kind(defaults[key]) not in (None, _kind(value))
    ]


def _failing_alone(
    spec: OptimizerSpec, overrides: dict[str, Any], steps_per_epoch: int, total_steps: int
) -> list[str]:
    """A line for each setting that fails to build on its own (for settings whose default is unknown)."""
    lines = []
    for key, value in overrides.items():
        try:
            _quiet_build(spec, steps_per_epoch, total_steps, {key: value})
        except (TypeError, ValueError) as error:
            lines.append(f"--set {key}={value!r}: optimizer {spec.name!r} cannot take it: {error}")
    return lines


def _blame(
    spec: OptimizerSpec, overrides: dict[str, Any], steps_per_epoch: int, total_steps: int, exc: Exception
) -> str:
    """The message for ``overrides`` that made ``spec``'s build raise ``exc``, naming only the ones at fault:
    those of another kind than their default, else those that fail on their own, else all of them."""
    at_fault = _wrong_kinds(spec, overrides, steps_per_epoch, total_steps) or _failing_alone(
        spec, overrides, steps_per_epoch, total_steps
    )
    if at_fault:
        return "; ".join(at_fault)
    settings = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    return f"optimizer {spec.name!r} cannot take the settings {settings} together: {exc}"
