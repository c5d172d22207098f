r"""SGD with the stochastic Polyak step size, SPS_max of Loizou et al., "Stochastic Polyak Step-size for
SGD: An Adaptive Learning Rate for Fast Convergence" (AISTATS 2021), written from the paper.

.. math::

    \gamma_k = \min\Big\{ \frac{f_i(x_k) - f_i^*}{c\,\|\nabla f_i(x_k)\|^2},\ \gamma_{b,k} \Big\},
    \qquad x_{k+1} = x_k - \gamma_k \nabla f_i(x_k)

with ``f_i* = 0`` (interpolation: each mini-batch loss can reach zero). The class's default ``c = 1/2``
is the constant of the paper's convergence theorems (and the authors' code's default); the bench's
``sps`` entry uses ``c = 0.2``, the authors' setting for their deep-learning experiments (a step up to
2.5 times larger). The bound ``γ_b`` is ``lr``; with ``smoothing`` (the default) it follows the reset
the paper borrows from Vaswani et al. (2019) for its deep-learning experiments,
``γ_{b,k} = τ^{b/n} γ_{k-1}`` with τ = 2 (the step may grow by at most τ per epoch), starting from
``γ_{b,0} = lr``; ``smoothing=False`` keeps the constant bound ``lr``. A zero gradient or a loss at or
below ``f_i*`` takes no step and records the bound as the step size (so the smoothing cannot collapse).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._global_step import GlobalStepOptimizer
from .spec import BuiltOptimizer, OptimizerSpec, check_positive, group_lrs

__all__ = ["SPECS", "SPS"]


class SPS(GlobalStepOptimizer):
    """SGD with the stochastic Polyak step size SPS_max (Loizou et al. 2021).

    Args:
        params: the parameters (or param groups, which must not set their own ``lr``).
        lr: the bound γ_b (with ``smoothing``, the first step's bound).
        steps_per_epoch: n/b, mini-batches per epoch (the smoothing's growth is spread over it).
        c: the constant in the denominator.
        f_star: the assumed lower bound of every mini-batch loss.
        smoothing: bound each step by τ^{b/n} times the previous one instead of by ``lr``.
        tau: the per-epoch growth allowed by the smoothing.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        *,
        steps_per_epoch: int,
        c: float = 0.5,
        f_star: float = 0.0,
        smoothing: bool = True,
        tau: float = 2.0,
    ) -> None:
        check_positive("c", c)
        if not isinstance(f_star, (int, float)) or isinstance(f_star, bool) or not math.isfinite(f_star):
            raise ValueError(f"f_star must be a finite number, got {f_star!r}")
        if check_positive("tau", tau) < 1.0:
            raise ValueError(f"tau must be >= 1 (a growth factor), got {tau!r}")
        if not isinstance(smoothing, bool):
            raise TypeError(f"smoothing must be a bool, got {type(smoothing).__name__}")
        defaults = {"lr": lr, "initial_lr": lr, "c": c, "f_star": f_star, "tau": tau}
        super().__init__(params, defaults, steps_per_epoch=steps_per_epoch)
        self.smoothing = smoothing

    def _bound(self) -> float:
        group = self.param_groups[0]
        if not self.smoothing or group["search_steps"] == 0:
            return float(group["initial_lr"])
        return self.step_size * group["tau"] ** group["batch_fraction"]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        returned, loss = self._evaluate(closure, "SPS")
        params, grads = self._params_with_grad()
        grad_norm_sq = self._squared_norm(grads)
        group = self.param_groups[0]
        bound = self._bound()
        if not (grad_norm_sq > 0.0 and math.isfinite(loss) and loss > group["f_star"]):
            # Nothing to step along (or the batch is at its floor): keep the bound as the step size, so
            # the smoothing does not collapse to zero for good.
            self._set_step_size(bound)
            return returned
        polyak = (loss - group["f_star"]) / (group["c"] * grad_norm_sq)
        step_size = min(polyak, bound)
        for p, grad in zip(params, grads):
            p.add_(grad, alpha=-step_size)
        self._set_step_size(step_size)
        return returned


# The authors' constant for their deep-learning experiments (Loizou et al. 2021, section 6); the class's
# c = 1/2 is the constant of the convergence theorems (and their code's default), not what they ran.
DEEP_LEARNING_C = 0.2


def _build(
    params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
) -> BuiltOptimizer:
    overrides.setdefault("c", DEEP_LEARNING_C)
    optimizer = SPS(params, lr, steps_per_epoch=steps_per_epoch, **overrides)
    return BuiltOptimizer(optimizer, None, group_lrs(optimizer))


SPECS = (
    OptimizerSpec(
        name="sps",
        description=(
            "SGD + stochastic Polyak step SPS_max (Loizou et al. 2021): f*=0, smoothed bound, c=0.2 "
            "(the authors' deep-learning setting; 0.5 is only the class default)"
        ),
        build=_build,
        default_lr=1.0,
        needs_closure=True,
        hyperparameters=("c", "f_star", "smoothing", "tau"),
    ),
)
