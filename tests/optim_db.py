"""The table of every optimizer the repository builds on :class:`ntlr.TLR`, for the generic contract tests.

Like torch's ``optim_db`` (torch/testing/_internal/common_optimizers.py): one entry per optimizer, and
``tests/test_contract.py`` runs each generic check of the ``torch.optim.Optimizer`` contract (state dict
round trip, hooks, schedulers, copying, ...) over all of them. An entry builds its TLR on param groups
that carry their own ``lr``, with a given window length ``update_every``.

The bench's entries are found, not listed: every ``ntlr_bench.optimizers.OPTIMIZERS`` spec whose built
optimizer is a TLR is in the table, so a new TLR-based bench optimizer is covered without editing this
file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from ntlr import TLR
from ntlr_bench.optimizers import OPTIMIZERS, build_optimizer

ParamGroups = list[dict[str, Any]]


@dataclass(frozen=True)
class TLRInfo:
    """One optimizer built on TLR."""

    name: str
    build: Callable[[ParamGroups, int], TLR]  # build(param groups with their lr, update_every)

    def __call__(self, groups: ParamGroups, update_every: int) -> TLR:
        opt = self.build(groups, update_every)
        assert isinstance(opt, TLR), f"{self.name} built a {type(opt).__name__}, not a TLR"
        return opt


def _tlr(inner: Callable[..., torch.optim.Optimizer], inner_kwargs: dict[str, Any], **tlr_kwargs: Any):
    return lambda groups, k: TLR(inner(groups, **inner_kwargs), update_every=k, **tlr_kwargs)


MOMENTUM = {"momentum": 0.9}
LIBRARY = [
    TLRInfo("sgd_momentum", _tlr(torch.optim.SGD, MOMENTUM)),
    TLRInfo("adam", _tlr(torch.optim.Adam, {})),
    TLRInfo("adamw", _tlr(torch.optim.AdamW, {"weight_decay": 0.01})),
    TLRInfo("rmsprop", _tlr(torch.optim.RMSprop, {"momentum": 0.5})),
    TLRInfo("rule_paper", _tlr(torch.optim.SGD, MOMENTUM, rule="paper", gamma=0.5, max_factor=10.0)),
    # Reads the loss (the tests feed it through observe_loss) and may roll windows back; with momentum its
    # windows are longer than update_every (past the momentum's memory).
    TLRInfo("rule_robust", _tlr(torch.optim.SGD, MOMENTUM, rule="robust")),
    TLRInfo("loss_guard", _tlr(torch.optim.Adam, {}, loss_guard=True)),
]


def _bench_build(name: str) -> Callable[[ParamGroups, int], Any]:
    def build(groups: ParamGroups, update_every: int) -> Any:
        # The groups' own lr wins over build_optimizer's lr, which only fills groups without one.
        _, built = build_optimizer(
            name,
            groups,
            lr=OPTIMIZERS[name].default_lr,
            steps_per_epoch=100,
            total_steps=1000,
            update_every=update_every,
        )
        return built.optimizer

    return build


def _bench_entries() -> list[TLRInfo]:
    entries = []
    for name, spec in OPTIMIZERS.items():
        probe = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": spec.default_lr}]
        try:
            _, built = build_optimizer(name, probe, lr=spec.default_lr, steps_per_epoch=10, total_steps=100)
        except ImportError:  # a peer whose optional package is not installed (none of them is a TLR)
            continue
        if isinstance(built.optimizer, TLR):
            entries.append(TLRInfo(f"bench_{name}", _bench_build(name)))
    return entries


BENCH = _bench_entries()
OPTIM_DB: list[TLRInfo] = [*LIBRARY, *BENCH]


def parametrize_over_optim_db(argname: str = "info"):
    """``@pytest.mark.parametrize`` over :data:`OPTIM_DB`, one test id per entry."""
    return pytest.mark.parametrize(argname, OPTIM_DB, ids=[info.name for info in OPTIM_DB])
