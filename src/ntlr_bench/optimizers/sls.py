r"""SGD with a stochastic Armijo line search: SLS, "SGD + Armijo" of Vaswani et al., "Painless Stochastic
Gradient: Interpolation, Line-Search, and Convergence Rates" (NeurIPS 2019), written from the paper.

At each step, on the current mini-batch ``f_i`` (the closure), starting from the reset step size η:

.. math::

    \text{while } f_i(w - \eta \nabla f_i(w)) > f_i(w) - c\,\eta\,\|\nabla f_i(w)\|^2:
        \quad \eta \leftarrow \beta\,\eta

then ``w ← w - η ∇f_i(w)``. The reset (the paper's Algorithm 2) gives the first step the initial step
size ``lr`` (η_max) and then, with option 2, ``η ← η_prev · γ^{b/n}``: the step size may grow by γ per
epoch, spread over its ``n/b = steps_per_epoch`` steps; option 0 keeps η_prev, option 1 restarts from
``lr``. Defaults are the paper's: c = 0.1, β = 0.9, γ = 2, option 2, η_max = 1.

``reset_option`` follows the paper's numbering (Algorithm 2), which the authors' code
(``sls.utils.reset_step``) swaps: there option 1 grows the step by γ^{b/n} (their default) and option 2
restarts from the initial step size. Their ``reset_option=1`` is this class's ``reset_option=2`` and
vice versa; option 0 (keep η_prev) is the same in both.

Each trial point costs one closure call, made under ``torch.no_grad()``: the closure must then only
compute the loss (the benchmark runner's calls ``backward`` only when grad mode is on), so a trial is a
forward pass. ``.grad`` keeps the gradient at the step's starting point. If ``max_backtracks`` trials
all fail, the step is taken with the last reduced η without a further check (it is ``β^max_backtracks``
of the reset step, i.e. negligible).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._global_step import GlobalStepOptimizer
from .spec import BuiltOptimizer, OptimizerSpec, check_in_unit_interval, check_positive, group_lrs

__all__ = ["SLS", "SPECS"]


class SLS(GlobalStepOptimizer):
    """SGD with a backtracking Armijo line search on each mini-batch (Vaswani et al. 2019).

    Args:
        params: the parameters (or param groups, which must not set their own ``lr``).
        lr: the first step's step size, η_max.
        steps_per_epoch: n/b, mini-batches per epoch (the growth of reset option 2 is spread over it).
        c: the Armijo constant.
        beta: the backtracking factor.
        gamma: the per-epoch growth of the reset step size (option 2).
        reset_option: the paper's numbering (Algorithm 2): 0 (keep the last step size), 1 (restart from
            ``lr``) or 2 (grow by γ^{b/n}). The authors' code swaps 1 and 2 (its 1 grows, its 2
            restarts): its ``reset_option=1`` default is this ``reset_option=2``.
        max_backtracks: the most step-size reductions per step.

    ``last_search`` holds the last step's search: the loss and squared gradient norm at the start, the
    accepted step size, the loss there, the number of backtracks and whether Armijo held.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        *,
        steps_per_epoch: int,
        c: float = 0.1,
        beta: float = 0.9,
        gamma: float = 2.0,
        reset_option: int = 2,
        max_backtracks: int = 100,
    ) -> None:
        check_in_unit_interval("c", c)
        check_in_unit_interval("beta", beta)
        if check_positive("gamma", gamma) < 1.0:
            raise ValueError(f"gamma must be >= 1 (a growth factor), got {gamma!r}")
        if reset_option not in (0, 1, 2):
            raise ValueError(f"reset_option must be 0, 1 or 2, got {reset_option!r}")
        if isinstance(max_backtracks, bool) or not isinstance(max_backtracks, int) or max_backtracks < 1:
            raise ValueError(f"max_backtracks must be an int >= 1, got {max_backtracks!r}")
        defaults = {"lr": lr, "initial_lr": lr, "c": c, "beta": beta, "gamma": gamma}
        super().__init__(params, defaults, steps_per_epoch=steps_per_epoch)
        self.reset_option = reset_option
        self.max_backtracks = max_backtracks
        self.last_search: dict[str, Any] = {}

    def _reset(self) -> float:
        group = self.param_groups[0]
        if group["search_steps"] == 0 or self.reset_option == 1:
            return float(group["initial_lr"])
        if self.reset_option == 0:
            return self.step_size
        return self.step_size * group["gamma"] ** group["batch_fraction"]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        returned, loss = self._evaluate(closure, "SLS")
        params, grads = self._params_with_grad()
        grads = [g.detach().clone() for g in grads]
        grad_norm_sq = self._squared_norm(grads)
        step_size = self._reset()
        group = self.param_groups[0]
        self.last_search = {"loss": loss, "grad_norm_sq": grad_norm_sq, "backtracks": 0}
        if not (grad_norm_sq > 0.0 and math.isfinite(loss)):
            # A zero gradient has nothing to search along; a non-finite one cannot be searched.
            self.last_search.update(step_size=step_size, trial_loss=loss, armijo=False)
            self._set_step_size(step_size)
            return returned
        start = [p.detach().clone() for p in params]

        armijo, trial_loss = False, math.nan
        for backtracks in range(self.max_backtracks + 1):
            for p, w0, g in zip(params, start, grads):
                torch.add(w0, g, alpha=-step_size, out=p)
            if backtracks == self.max_backtracks:
                break  # out of trials: keep this (tiny) step unchecked
            _, trial_loss = self._evaluate(closure, "SLS", grad=False)
            if trial_loss <= loss - group["c"] * step_size * grad_norm_sq:
                armijo = True
                break
            step_size *= group["beta"]
        self.last_search.update(
            step_size=step_size, trial_loss=trial_loss, backtracks=backtracks, armijo=armijo
        )
        self._set_step_size(step_size)
        return returned


def _build(
    params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
) -> BuiltOptimizer:
    optimizer = SLS(params, lr, steps_per_epoch=steps_per_epoch, **overrides)
    return BuiltOptimizer(optimizer, None, group_lrs(optimizer))


SPECS = (
    OptimizerSpec(
        name="sls",
        description="SGD + stochastic Armijo line search (Vaswani et al. 2019): c=0.1, β=0.9, reset ×2^{b/n}",
        build=_build,
        default_lr=1.0,
        needs_closure=True,
        hyperparameters=("c", "beta", "gamma", "reset_option", "max_backtracks"),
    ),
)
