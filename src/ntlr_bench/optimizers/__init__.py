"""The optimizer registry of ntlr-bench: every method the paper compares, and the learning-rate-free peers.

``OPTIMIZERS`` maps a name to an :class:`OptimizerSpec`; :func:`build_optimizer` validates the arguments
and builds one. Importing this package needs only torch and ntlr: the optional peer packages are
imported when their entry is built.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

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
        # A setting of the wrong type (--set momentum='"x"') reaches the optimizer's own comparisons.
        settings = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise ValueError(f"optimizer {name!r} cannot take the setting(s) {settings}: {exc}") from exc
    return spec, built
