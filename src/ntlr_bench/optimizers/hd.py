r"""Per-step hypergradient descent (Baydin et al., "Online Learning Rate Adaptation with Hypergradient
Descent", ICLR 2018): SGD-HD (their Algorithm 4) and Adam-HD (Algorithm 6), written from the paper.

Each step first moves the rate along the hypergradient ``h_t = ∂f(θ_{t-1}) / ∂α``, which the update rule
makes a dot product of this step's gradient with the previous step's update direction, then takes the
ordinary step with the new rate:

* SGD-HD:  ``h_t = -∇f(θ_{t-1})·∇f(θ_{t-2})``, ``α_t = α_{t-1} - β h_t``, ``θ_t = θ_{t-1} - α_t ∇f(θ_{t-1})``
* Adam-HD: ``h_t = -∇f(θ_{t-1})·m̂_{t-1}/(√v̂_{t-1} + ε)``,  ``α_t = α_{t-1} - β h_t``, then Adam's step
  ``θ_t = θ_{t-1} - α_t m̂_t/(√v̂_t + ε)``.

The previous direction is zero before the first step (h_1 = 0). The paper adapts one global α; here each
param group has its own (one group = the paper's method), stored in the group's ``lr``. Defaults for β
are the paper's: 1e-3 for SGD-HD and 1e-7 for Adam-HD (its logistic-regression and MLP experiments; 1e-8
for VGG). Like the paper, nothing keeps α positive. ``weight_decay`` adds an L2 term to the gradient
before anything else (so the hypergradient is that of the regularised objective).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .spec import BuiltOptimizer, OptimizerSpec, check_positive, group_lrs

__all__ = ["SGDHD", "SPECS", "AdamHD"]

PREV_DIRECTION = "hd_prev_direction"  # SGD-HD: the previous gradient; Adam-HD: the previous m̂/(√v̂+ε)


def _check_common(lr: float, beta: float, weight_decay: float) -> None:
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr >= 0.0:
        raise ValueError(f"lr must be a non-negative number, got {lr!r}")
    check_positive("beta", beta)
    if not isinstance(weight_decay, (int, float)) or not weight_decay >= 0.0:
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")


def _grads(group: dict[str, Any]) -> list[tuple[Tensor, Tensor]]:
    """(param, gradient of the L2-regularised loss) for the group's params that have a grad."""
    pairs = []
    for param in group["params"]:
        if param.grad is None:
            continue
        if param.grad.is_sparse:
            raise ValueError("hypergradient descent does not support sparse gradients")
        grad = param.grad
        if group["weight_decay"] != 0.0:
            grad = grad.add(param, alpha=group["weight_decay"])
        pairs.append((param, grad))
    return pairs


class _HypergradientOptimizer(Optimizer):
    def _hypergradient(self, pairs: list[tuple[Tensor, Tensor]]) -> float:
        """``-h_t`` = Σ grad · previous direction over the group (0 where there is no previous step)."""
        dots = [
            torch.dot(grad.flatten().double(), self.state[param][PREV_DIRECTION].flatten().double())
            for param, grad in pairs
            if PREV_DIRECTION in self.state[param]
        ]
        return float(torch.stack(dots).sum()) if dots else 0.0


class SGDHD(_HypergradientOptimizer):
    """SGD whose learning rate follows hypergradient descent at every step (Baydin et al., Alg. 4)."""

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-3, *, beta: float = 1e-3, weight_decay: float = 0.0
    ) -> None:
        _check_common(lr, beta, weight_decay)
        super().__init__(params, {"lr": lr, "beta": beta, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            pairs = _grads(group)
            # α_t = α_{t-1} - β h_t with h_t = -∇f(θ_{t-1})·∇f(θ_{t-2})
            group["lr"] = group["lr"] + group["beta"] * self._hypergradient(pairs)
            for param, grad in pairs:
                self.state[param][PREV_DIRECTION] = grad.detach().clone()
                param.add_(grad, alpha=-group["lr"])
        return loss


class AdamHD(_HypergradientOptimizer):
    """Adam whose learning rate follows hypergradient descent at every step (Baydin et al., Alg. 6)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        beta: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        _check_common(lr, beta, weight_decay)
        if not (
            isinstance(betas, (tuple, list))
            and len(betas) == 2
            and all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)
        ):
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")
        check_positive("eps", eps)
        defaults = {"lr": lr, "beta": beta, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            pairs = _grads(group)
            # α_t = α_{t-1} - β h_t with h_t = -∇f(θ_{t-1})·m̂_{t-1}/(√v̂_{t-1} + ε)
            group["lr"] = group["lr"] + group["beta"] * self._hypergradient(pairs)
            for param, grad in pairs:
                state = self.state[param]
                if "step" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                t = state["step"]
                state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m_hat = state["exp_avg"] / (1 - beta1**t)
                v_hat = state["exp_avg_sq"] / (1 - beta2**t)
                direction = m_hat.div_(v_hat.sqrt_().add_(group["eps"]))
                state[PREV_DIRECTION] = direction
                param.add_(direction, alpha=-group["lr"])
        return loss


def _build_sgd_hd(
    params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
) -> BuiltOptimizer:
    optimizer = SGDHD(params, lr, **overrides)
    return BuiltOptimizer(optimizer, None, group_lrs(optimizer))


def _build_adam_hd(
    params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
) -> BuiltOptimizer:
    optimizer = AdamHD(params, lr, **overrides)
    return BuiltOptimizer(optimizer, None, group_lrs(optimizer))


SPECS = (
    OptimizerSpec(
        name="sgd_hd",
        description="SGD-HD: per-step hypergradient descent on the SGD rate (Baydin et al. 2018), β=1e-3",
        build=_build_sgd_hd,
        default_lr=0.01,
        hyperparameters=("beta", "weight_decay"),
    ),
    OptimizerSpec(
        name="adam_hd",
        description="Adam-HD: per-step hypergradient descent on the Adam rate (Baydin et al. 2018), β=1e-7",
        build=_build_adam_hd,
        default_lr=1e-3,
        hyperparameters=("beta", "betas", "eps", "weight_decay"),
    ),
)
