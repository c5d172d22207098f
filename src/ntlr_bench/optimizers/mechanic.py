"""Mechanic (Cutkosky, Defazio & Mehta, NeurIPS 2023) from PyPI ``mechanic-pytorch``, around SGD.

Like TLR, Mechanic wraps any optimizer and learns one scale: it keeps the weights at ``ref + s·Δ``, ``Δ``
the sum of the base optimizer's updates since the start and ``s`` a scale tuned online. The base here is
SGD with momentum 0.9, its ``lr`` the knob (the package's README runs it at 1.0 and says any value works).

Resuming from a checkpoint is broken upstream (mechanic-pytorch 0.0.1; optimizedlearning/mechanic issue
#4, open): ``load_state_dict`` accepts the state, and the first step after it raises ``KeyError`` on a
parameter. The package keeps each parameter's reference point under ``optimizer.state["_mechanic"][param]``,
keyed by the parameter tensor itself inside a plain dict, which ``Optimizer.state_dict`` passes through
without mapping tensors to indices; loaded, those keys are the saving process's tensors (or copies made by
``torch.save``/``torch.load`` or ``deepcopy``), never the live parameters, even when loaded back into the
optimizer that saved it. That step also leaves autograd off for the whole thread: it turns grad mode off
and restores it only when it returns, so the next ``backward()`` fails with "element 0 of tensors does not
require grad". Resetting Mechanic's state on load (its authors' suggested workaround) would silently
restart its tuning from ``s = 0`` on a model already trained, so this entry refuses to load instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch

from .spec import BuiltOptimizer, OptimizerSpec, require_package

__all__ = ["RESUME_BROKEN", "SPECS"]

RESUME_BROKEN = (
    "mechanic-pytorch 0.0.1 cannot resume from a checkpoint (optimizedlearning/mechanic issue #4): it keys "
    "each parameter's reference point by the parameter tensor inside optimizer.state['_mechanic'], which "
    "state_dict() does not map to indices, so after load_state_dict() the next step raises KeyError (and "
    "leaves autograd disabled). Start the run again, or build a fresh optimizer: Mechanic then re-tunes its "
    "scale from zero around the loaded weights."
)

_TUNER_HPARAMS = ("s_decay", "betas", "s_init", "eps", "store_delta")
_SGD_HPARAMS = ("momentum", "weight_decay", "nesterov", "dampening")


def _refuse_load(self: Any, state_dict: Any) -> None:
    raise RuntimeError(RESUME_BROKEN)


def _mechanic_lr(optimizer: torch.optim.Optimizer) -> Callable[[], list[float]]:
    # A step moves the weights by about s times the base step: s * lr is the effective rate. NaN until
    # the first step creates the tuner's state.
    def get() -> list[float]:
        state = cast(dict[Any, Any], optimizer.state).get("_mechanic")  # keyed by a str, not a tensor
        if state is None:
            return [math.nan] * len(optimizer.param_groups)
        scale = float(state["s"].sum())
        return [scale * float(group["lr"]) for group in optimizer.param_groups]

    return get


def _build_mechanic(
    params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
) -> BuiltOptimizer:
    module = require_package("mechanic_pytorch", "mechanic-pytorch")
    tuner = {k: overrides.pop(k) for k in _TUNER_HPARAMS if k in overrides}
    if "betas" in tuner:
        tuner["betas"] = tuple(tuner["betas"])
    overrides.setdefault("momentum", 0.9)
    mechanized = module.mechanize(torch.optim.SGD, **tuner)
    # A subclass, so is_mechanized() and the package's step stay as they are; only loading is refused.
    optimizer_class = type("MechanicSGD", (mechanized,), {"load_state_dict": _refuse_load})
    optimizer = optimizer_class(params, lr=lr, **overrides)
    return BuiltOptimizer(optimizer, None, _mechanic_lr(optimizer))


SPECS = (
    OptimizerSpec(
        name="mechanic",
        description="Mechanic (Cutkosky, Defazio & Mehta 2023) around SGD momentum 0.9, lr = the base "
        "SGD's rate; cannot resume from a checkpoint (upstream bug: load_state_dict refused)",
        build=_build_mechanic,
        default_lr=1.0,  # the package README's
        package="mechanic-pytorch",
        hyperparameters=(*_SGD_HPARAMS, *_TUNER_HPARAMS),
    ),
)
