"""A synthetic, ill-conditioned least-squares problem whose optimum is known in closed form.

``y = X w* + b* + noise`` with the columns of ``X`` scaled over a decade and a half, so the Hessian of
the mean squared error, ``X^T X / n``, has a condition number near 1e3: plain SGD needs a rate matched
to the largest curvature and then crawls along the smallest. The least-squares optimum of the training
split (``optimum_loss``) is computed in float64 and kept to 10 significant digits (below), so a run's
excess loss over it is exact to far below what a report shows, and the same in every process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

SEED = 0
N_TRAIN, N_TEST, FEATURES = 2048, 512, 64
# Column scales log-spaced from 1 to 10^-1.5: a Hessian condition number of 10^3.
LOG_SCALE_SPAN = 1.5
NOISE = 0.1


@dataclass(frozen=True)
class RegressionData:
    """In-memory regression data: float inputs ``(N, D)`` and targets ``(N,)``, with the training optimum."""

    name: str
    train_inputs: Tensor
    train_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor
    optimum_loss: float  # min over (w, b) of the training split's mean squared error
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def _split(n: int, generator: torch.Generator, scales: Tensor, w: Tensor, b: float) -> tuple[Tensor, Tensor]:
    x = torch.randn(n, len(scales), generator=generator, dtype=torch.float64) * scales
    y = x @ w + b + NOISE * torch.randn(n, generator=generator, dtype=torch.float64)
    return x, y


def load_lstsq_data(_path: object, limit: int | None) -> RegressionData:
    generator = torch.Generator().manual_seed(SEED)
    scales = torch.logspace(0.0, -LOG_SCALE_SPAN, FEATURES, dtype=torch.float64)
    w = torch.randn(FEATURES, generator=generator, dtype=torch.float64)
    b = 0.5
    x_train, y_train = _split(N_TRAIN if limit is None else min(limit, N_TRAIN), generator, scales, w, b)
    x_test, y_test = _split(N_TEST, generator, scales, w, b)
    design = torch.cat([x_train, torch.ones(len(x_train), 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, y_train.unsqueeze(1)).solution
    # Rounded to 10 significant digits: torch.linalg.lstsq on CPU returns a solution that differs in its
    # last bits from call to call (it depends on where the allocator put the arrays), which moved the
    # optimum by ~1e-15 relative and made `ntlr-bench rerun` call bit-identical runs different. Excess
    # losses are reported at 1e-6 and above; the rounding moves them by at most 5e-11 of the optimum.
    optimum = float(f"{float((design @ solution).squeeze(1).sub(y_train).square().mean()):.10g}")
    return RegressionData(
        name="lstsq",
        train_inputs=x_train.float(),
        train_targets=y_train.float(),
        test_inputs=x_test.float(),
        test_targets=y_test.float(),
        optimum_loss=optimum,
        source="generated (ntlr_bench.data.synthetic)",
        meta={"seed": SEED, "features": FEATURES, "condition_number": 10 ** (2 * LOG_SCALE_SPAN)},
    )
