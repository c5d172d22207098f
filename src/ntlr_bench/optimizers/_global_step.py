"""Shared plumbing of the step-size searches (SLS, SPS): one scalar step for all parameters."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .spec import check_positive

__all__ = ["GlobalStepOptimizer"]


class GlobalStepOptimizer(Optimizer):
    """An optimizer that moves all parameters along ``-grad`` with one step size found from the loss.

    The step size lives in every group's ``lr`` (for logging and schedulers to read); the search runs
    on the whole parameter vector, so groups may not set an ``lr`` of their own.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, steps_per_epoch: int) -> None:
        check_positive("lr", defaults["lr"])
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be an int >= 1, got {steps_per_epoch!r}")
        # b/n of the papers' resets: the step size may grow by a factor per epoch, spread over its steps.
        defaults = {**defaults, "batch_fraction": 1.0 / steps_per_epoch, "search_steps": 0}
        super().__init__(params, defaults)
        if any(group["lr"] != defaults["lr"] for group in self.param_groups):
            raise ValueError(
                f"{type(self).__name__} searches one step size for all parameters: param groups must not "
                "set their own 'lr'"
            )

    @property
    def step_size(self) -> float:
        return float(self.param_groups[0]["lr"])

    def _set_step_size(self, value: float) -> None:
        for group in self.param_groups:
            group["lr"] = value
            group["search_steps"] += 1

    def _params_with_grad(self) -> tuple[list[Tensor], list[Tensor]]:
        """The parameters that have a grad, and their grads."""
        params: list[Tensor] = []
        grads: list[Tensor] = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    params.append(p)
                    grads.append(p.grad)
        if any(g.is_sparse for g in grads):
            raise ValueError(f"{type(self).__name__} does not support sparse gradients")
        return params, grads

    @staticmethod
    def _evaluate(closure: Callable[[], Any] | None, name: str, *, grad: bool = True) -> tuple[Any, float]:
        """Call the closure; return what it returned and its value as a float.

        With ``grad=False`` (a line search's trial point) the closure runs under ``torch.no_grad()``: it
        must then only compute the loss (call ``backward`` only when ``torch.is_grad_enabled()``).
        """
        if closure is None:
            raise ValueError(
                f"{name}.step needs a closure (zero_grad, forward, backward, return the loss): the step "
                "size is computed from the loss value"
            )
        try:
            with torch.set_grad_enabled(grad):
                loss = closure()
        except RuntimeError as error:
            if grad or "does not require grad" not in str(error):
                raise
            raise RuntimeError(
                f"{name} evaluates trial points under torch.no_grad(); the closure must call backward() "
                "only when torch.is_grad_enabled()"
            ) from error
        if loss is None:
            raise ValueError(f"the closure passed to {name}.step must return the loss")
        return loss, float(loss)

    @staticmethod
    def _squared_norm(tensors: list[Tensor]) -> float:
        if not tensors:
            return 0.0
        value = float(torch.stack([t.double().square().sum() for t in tensors]).sum())
        return value if math.isfinite(value) else math.nan
