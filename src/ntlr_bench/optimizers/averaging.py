r"""Polynomial-decay iterate averaging (Shamir & Zhang 2013) as an optimizer mixin with train()/eval().

DoG's authors require it ("DoG/L-DoG must be combined with iterate averaging") and evaluate the
averaged model; their package's averager wants the ``nn.Module``, while the registry only sees the
parameters, so this keeps the average per parameter instead:

.. math::

    \bar x_t = \Big(1 - \frac{1 + \gamma}{t + \gamma}\Big) \bar x_{t-1} + \frac{1 + \gamma}{t + \gamma} x_t,
    \qquad \gamma = 8 \text{ (their default)}

``eval()`` swaps the averages into the parameters (keeping the live iterate aside), ``train()`` swaps the
live iterate back, as schedule-free optimizers do (``average=False``: no average, both are no-ops).
Only parameters are averaged: buffers such as batch-norm statistics are the live model's.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import torch
from torch.optim import Optimizer

__all__ = ["with_polynomial_averaging"]

AVERAGE = "poly_avg"
LIVE = "poly_avg_live"
_O = TypeVar("_O", bound=Optimizer)


@functools.cache
def with_polynomial_averaging(optimizer_class: type[_O]) -> type[_O]:
    """A subclass of ``optimizer_class`` that also keeps a polynomial-decay average of the iterates."""

    class Averaged(optimizer_class):  # type: ignore[misc, valid-type]
        def __init__(
            self, *args: Any, average: bool = True, average_gamma: float = 8.0, **kwargs: Any
        ) -> None:
            if not isinstance(average, bool):
                raise TypeError(f"average must be a bool, got {type(average).__name__}")
            if not (isinstance(average_gamma, (int, float)) and average_gamma >= 0.0):
                raise ValueError(f"average_gamma must be a non-negative number, got {average_gamma!r}")
            super().__init__(*args, **kwargs)
            # average=False keeps train()/eval() as no-ops, so callers drive both variants alike.
            self.averaging = average
            for group in self.param_groups:
                group.setdefault("average_gamma", float(average_gamma))
                group.setdefault("average_steps", 0)
            self.averaging_eval_mode = False

        @torch.no_grad()
        def step(self, closure: Any = None) -> Any:
            if self.averaging_eval_mode:
                raise RuntimeError(
                    "the parameters hold the averaged iterate: call optimizer.train() before step()"
                )
            loss = super().step(closure)
            if not self.averaging:
                return loss
            for group in self.param_groups:
                group["average_steps"] += 1
                t, gamma = group["average_steps"], group["average_gamma"]
                weight = (1.0 + gamma) / (t + gamma)
                for param in group["params"]:
                    state = self.state[param]
                    if AVERAGE not in state:
                        state[AVERAGE] = param.detach().clone()
                    else:
                        state[AVERAGE].lerp_(param, weight)
            return loss

        @torch.no_grad()
        def eval(self) -> None:
            if self.averaging_eval_mode:
                return
            for param, state in self._averaged():
                state[LIVE] = param.detach().clone()
                param.copy_(state[AVERAGE])
            self.averaging_eval_mode = True

        @torch.no_grad()
        def train(self) -> None:
            if not self.averaging_eval_mode:
                return
            for param, state in self._averaged():
                param.copy_(state.pop(LIVE))
            self.averaging_eval_mode = False

        def _averaged(self) -> list[tuple[torch.Tensor, dict[str, Any]]]:
            return [
                (param, self.state[param])
                for group in self.param_groups
                for param in group["params"]
                if AVERAGE in self.state.get(param, ())
            ]

    Averaged.__name__ = Averaged.__qualname__ = f"Averaged{optimizer_class.__name__}"
    return Averaged
