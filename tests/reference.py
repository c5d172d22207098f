"""A paper-literal float64 reference of the TLR rule, written independently of ``ntlr``.

It imports nothing from ``ntlr``. Each param group's weights are handled as one flat float64 vector; the
inner optimizer runs with ``lr = base_lr × factor`` and, every ``K`` counted steps (steps with a non-zero
rate), the rule of Eq. 8 with the K-step approximation is applied:

    u_new = (w_snapshot - w_now) / mean(lr over the window)
    a = <u_old, u_new>,  b = <u_old, u_old>
    first window:            only remember u_new
    non-finite a or b:       factor unchanged
    b - a > 0:               factor *= min(1 + gamma * a / (b - a), max_factor)
    otherwise:               factor unchanged
    u_old = u_new, w_snapshot = w_now
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["ReferenceResult", "run_reference"]


@dataclass
class ReferenceResult:
    """What the reference run produced, step by step.

    ``lrs[t][g]`` is the rate group ``g`` used at step ``t``; ``weights[t]`` the flat float64 vector of all
    parameters after step ``t``; ``records`` one ``(step, group, a, b, factor, status)`` per meta-step;
    ``factors[g]`` the final trained factor of group ``g``.
    """

    lrs: list[list[float]] = field(default_factory=list)
    weights: list[torch.Tensor] = field(default_factory=list)
    records: list[tuple[int, int, float, float, float, str]] = field(default_factory=list)
    factors: list[float] = field(default_factory=list)


def _flat(params: list[torch.Tensor]) -> torch.Tensor:
    if not params:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in params])


def run_reference(
    model: torch.nn.Module,
    make_inner: Callable[[torch.nn.Module], torch.optim.Optimizer],
    batches: Iterable[Any],
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    *,
    update_every: int,
    gamma: float = 0.33,
    max_factor: float = 100.0,
    base_lrs: Callable[[int], list[float]] | None = None,
) -> ReferenceResult:
    """Train ``model`` in place with the reference rule; ``make_inner(model)`` builds the inner optimizer.

    The base rate of group ``g`` at step ``t`` is ``base_lrs(t)[g]`` when given (a schedule), otherwise
    the inner optimizer's ``lr``; the factor is the only thing trained.
    """
    inner = make_inner(model)
    groups = inner.param_groups
    n_groups = len(groups)
    base = [g["lr"] for g in groups]
    factor = [1.0] * n_groups
    count = [0] * n_groups
    lr_sum = [0.0] * n_groups
    steps = [0] * n_groups
    windows = [0] * n_groups
    snapshot = [_flat(g["params"]) for g in groups]
    u_old: list[torch.Tensor | None] = [None] * n_groups
    result = ReferenceResult()

    for t, batch in enumerate(batches):
        if base_lrs is not None:
            for g, lr in zip(groups, base_lrs(t)):
                g["lr"] = lr
        inner.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        used = []
        for i, g in enumerate(groups):
            base[i] = g["lr"]
            g["lr"] = base[i] * factor[i]
            used.append(g["lr"])
        inner.step()
        for i, g in enumerate(groups):
            g["lr"] = base[i]
        result.lrs.append(used)
        result.weights.append(_flat([p for g in groups for p in g["params"]]))

        for i, g in enumerate(groups):
            if used[i] == 0.0:
                continue
            count[i] += 1
            steps[i] += 1
            lr_sum[i] += used[i]
            if count[i] < update_every:
                continue
            w_now = _flat(g["params"])
            u_new = (snapshot[i] - w_now) / (lr_sum[i] / count[i])
            if windows[i] == 0:
                a = b = 0.0
                step_factor, status = 1.0, "first_window"
            else:
                a = float(torch.dot(u_old[i], u_new))
                b = float(torch.dot(u_old[i], u_old[i]))
                if not (math.isfinite(a) and math.isfinite(b)):
                    step_factor, status = 1.0, "nonfinite"
                elif b - a > 0.0:
                    step_factor = 1.0 + gamma * a / (b - a)
                    status = "updated"
                    if step_factor > max_factor:
                        step_factor, status = max_factor, "capped"
                else:
                    step_factor, status = 1.0, "nonpositive_denominator"
            factor[i] *= step_factor
            result.records.append((steps[i], i, a, b, step_factor, status))
            u_old[i] = u_new
            snapshot[i] = w_now
            windows[i] += 1
            count[i] = 0
            lr_sum[i] = 0.0

    result.factors = factor
    return result
