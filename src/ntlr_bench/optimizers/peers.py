"""Learning-rate-free peers from PyPI: D-Adaptation, Prodigy, Schedule-Free, DoG/LDoG.

The packages are optional (the ``bench`` extra): each builder imports its package when called and
raises an ImportError naming the pip package when it is missing, so the registry lists every entry on
any install. Unless overridden, each optimizer runs with its package's defaults, ``lr`` being the scale
its authors leave at 1 (AdamW-SF: its default 0.0025); the exceptions are noted on the entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from torch.optim import Optimizer

from .averaging import with_polynomial_averaging
from .spec import BuiltOptimizer, OptimizerSpec, require_package

__all__ = ["SPECS"]


def _d_times_lr(optimizer: Optimizer) -> Callable[[], list[float]]:
    # D-Adaptation/Prodigy step with d * lr (Adam-type; no bias correction by default), d starting at d0.
    return lambda: [float(group["d"]) * float(group["lr"]) for group in optimizer.param_groups]


def _dadapt_sgd_lr(optimizer: Optimizer) -> Callable[[], list[float]]:
    # DAdaptSGD multiplies the gradient by d * lr / ||g_0||: report that once ||g_0|| is known.
    def get() -> list[float]:
        g0_norm = optimizer.param_groups[0].get("g0_norm")
        scale = 1.0 / g0_norm if g0_norm else 1.0
        return [float(group["d"]) * float(group["lr"]) * scale for group in optimizer.param_groups]

    return get


def _schedulefree_lr(optimizer: Optimizer) -> Callable[[], list[float]]:
    # The rate of the coming step: lr times the linear warm-up factor the package applies at step k.
    def get() -> list[float]:
        rates = []
        for group in optimizer.param_groups:
            k, warmup = group["k"], group["warmup_steps"]
            rates.append(float(group["lr"]) * ((k + 1) / warmup if k < warmup else 1.0))
        return rates

    return get


def _dog_lr(optimizer: Optimizer) -> Callable[[], list[float]]:
    # DoG's step size needs the first gradient: NaN until the first step. LDoG keeps one per tensor; the
    # group's is reported as their mean.
    def get() -> list[float]:
        rates = []
        for group in optimizer.param_groups:
            etas = group.get("eta")
            rates.append(sum(float(e) for e in etas) / len(etas) if etas else math.nan)
        return rates

    return get


def _build_dadapt(class_name: str, lr_getter: Callable[[Optimizer], Callable[[], list[float]]], **defaults):
    def build(
        params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
    ) -> BuiltOptimizer:
        module = require_package("dadaptation", "dadaptation")
        optimizer = getattr(module, class_name)(params, lr=lr, **{**defaults, **overrides})
        return BuiltOptimizer(optimizer, None, lr_getter(optimizer))

    return build


def _build_prodigy(
    params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
) -> BuiltOptimizer:
    module = require_package("prodigyopt", "prodigyopt")
    optimizer = module.Prodigy(params, lr=lr, **overrides)
    return BuiltOptimizer(optimizer, None, _d_times_lr(optimizer))


# The package's README recommends a warm-up (its default is none, and its large rates can overshoot at
# the start); we give it 5% of the run unless warmup_steps is overridden.
_SF_WARMUP_FRACTION = 0.05


def _build_schedulefree(class_name: str):
    def build(
        params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
    ) -> BuiltOptimizer:
        module = require_package("schedulefree", "schedulefree")
        overrides.setdefault("warmup_steps", round(_SF_WARMUP_FRACTION * total_steps))
        optimizer = getattr(module, class_name)(params, lr=lr, **overrides)
        return BuiltOptimizer(optimizer, None, _schedulefree_lr(optimizer))

    return build


def _build_dog(class_name: str):
    def build(
        params: Iterable[Any], *, lr: float, steps_per_epoch: int, total_steps: int, **overrides: Any
    ) -> BuiltOptimizer:
        module = require_package("dog", "dog-optimizer")
        optimizer_class = with_polynomial_averaging(getattr(module, class_name))
        optimizer = optimizer_class(params, lr=lr, **overrides)
        return BuiltOptimizer(optimizer, None, _dog_lr(optimizer))

    return build


_DADAPT_HPARAMS = ("weight_decay", "d0", "growth_rate")
_ADAM_HPARAMS = ("betas", "eps", "weight_decay", "decouple", "use_bias_correction", "d0", "growth_rate")
_SF_HPARAMS = ("weight_decay", "warmup_steps", "r", "weight_lr_power")
_DOG_HPARAMS = ("reps_rel", "weight_decay", "eps", "init_eta", "average", "average_gamma")

SPECS = (
    OptimizerSpec(
        name="dadapt_sgd",
        description="D-Adaptation SGD (Defazio & Mishchenko 2023), momentum 0.9, lr = scale on d",
        # The package defaults to no momentum; every other SGD here runs with momentum, 0.9 is the usual.
        build=_build_dadapt("DAdaptSGD", _dadapt_sgd_lr, momentum=0.9),
        default_lr=1.0,
        package="dadaptation",
        hyperparameters=("momentum", *_DADAPT_HPARAMS),
    ),
    OptimizerSpec(
        name="dadapt_adam",
        description="D-Adaptation Adam (Defazio & Mishchenko 2023), lr = scale on the d-estimate",
        build=_build_dadapt("DAdaptAdam", _d_times_lr),
        default_lr=1.0,
        package="dadaptation",
        hyperparameters=_ADAM_HPARAMS,
    ),
    OptimizerSpec(
        name="prodigy",
        description="Prodigy (Mishchenko & Defazio 2024), lr = scale on the d-estimate",
        build=_build_prodigy,
        default_lr=1.0,
        package="prodigyopt",
        hyperparameters=(*_ADAM_HPARAMS, "beta3", "safeguard_warmup", "d_coef"),
    ),
    OptimizerSpec(
        name="schedulefree_sgd",
        description="Schedule-Free SGD (Defazio et al. 2024), momentum 0.9, warm-up 5% of the steps",
        build=_build_schedulefree("SGDScheduleFree"),
        default_lr=1.0,
        has_train_eval=True,
        package="schedulefree",
        hyperparameters=("momentum", *_SF_HPARAMS),
    ),
    OptimizerSpec(
        name="schedulefree_adamw",
        description="Schedule-Free AdamW (Defazio et al. 2024), warm-up 5% of the steps",
        build=_build_schedulefree("AdamWScheduleFree"),
        default_lr=0.0025,
        has_train_eval=True,
        package="schedulefree",
        hyperparameters=("betas", "eps", *_SF_HPARAMS),
    ),
    OptimizerSpec(
        name="dog",
        description="DoG, distance over gradients (Ivgi et al. 2023), with polynomial-decay averaging",
        build=_build_dog("DoG"),
        default_lr=1.0,
        has_train_eval=True,
        package="dog-optimizer",
        hyperparameters=_DOG_HPARAMS,
    ),
    OptimizerSpec(
        name="ldog",
        description="Layer-wise DoG (Ivgi et al. 2023), with polynomial-decay averaging",
        build=_build_dog("LDoG"),
        default_lr=1.0,
        has_train_eval=True,
        package="dog-optimizer",
        hyperparameters=_DOG_HPARAMS,
    ),
)
