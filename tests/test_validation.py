"""Bad arguments fail at construction with a message naming them."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from ntlr import TLR


def _sgd() -> torch.optim.SGD:
    return torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)


# (TLR keyword arguments, exception type, a substring the message must contain)
CASES: list[tuple[dict, type[Exception], str]] = [
    ({"update_every": 5, "gamma": 0.0}, ValueError, "gamma"),
    ({"update_every": 5, "gamma": -0.1}, ValueError, "gamma"),
    ({"update_every": 5, "gamma": 1.0001}, ValueError, "gamma"),
    ({"update_every": 5, "gamma": math.nan}, ValueError, "gamma"),
    ({"update_every": 5, "gamma": math.inf}, ValueError, "gamma"),
    ({"update_every": 5, "gamma": "0.3"}, ValueError, "gamma"),
    ({"update_every": 5, "gamma": True}, ValueError, "gamma"),
    ({"steps_per_epoch": 100, "p": 0.0}, ValueError, "p must"),
    ({"steps_per_epoch": 100, "p": -0.2}, ValueError, "p must"),
    ({"steps_per_epoch": 100, "p": math.nan}, ValueError, "p must"),
    ({"steps_per_epoch": 100, "p": math.inf}, ValueError, "p must"),
    ({"update_every": 0}, ValueError, "update_every"),
    ({"update_every": -3}, ValueError, "update_every"),
    ({"update_every": 5.0}, TypeError, "update_every"),
    ({"update_every": 2.5}, TypeError, "update_every"),
    ({"update_every": True}, TypeError, "update_every"),
    ({"update_every": "5"}, TypeError, "update_every"),
    ({"steps_per_epoch": 0}, ValueError, "steps_per_epoch"),
    ({"steps_per_epoch": -1}, ValueError, "steps_per_epoch"),
    ({"steps_per_epoch": 10.0}, TypeError, "steps_per_epoch"),
    ({"steps_per_epoch": False}, TypeError, "steps_per_epoch"),
    ({"update_every": 5, "steps_per_epoch": 100}, ValueError, "exactly one of update_every"),
    ({}, ValueError, "exactly one of update_every"),
    ({"update_every": 5, "p": 3.0}, ValueError, "p=3.0 sets the window with steps_per_epoch"),
    ({"update_every": 5, "max_factor": 0.5}, ValueError, "max_factor"),
    ({"update_every": 5, "max_factor": 0.0}, ValueError, "max_factor"),
    ({"update_every": 5, "max_factor": -2.0}, ValueError, "max_factor"),
    ({"update_every": 5, "max_factor": math.nan}, ValueError, "max_factor"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), CASES, ids=[repr(c[0]) for c in CASES])
def test_bad_hyperparameters(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        TLR(_sgd(), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"update_every": 1}, 1),
        ({"update_every": 7}, 7),
        ({"steps_per_epoch": 100}, 20),  # the paper's default p = 0.2
        ({"steps_per_epoch": 100, "p": 0.05}, 5),
        ({"steps_per_epoch": 3, "p": 0.01}, 1),  # never below one step
        ({"update_every": 5, "gamma": 1.0, "max_factor": 1.0}, 5),  # the bounds themselves are valid
    ],
)
def test_good_hyperparameters(kwargs: dict, expected: int) -> None:
    assert TLR(_sgd(), **kwargs).update_every == expected


@pytest.mark.parametrize(
    "optimizer",
    [None, nn.Linear(2, 2), [torch.zeros(2, requires_grad=True)], torch.optim.SGD],
    ids=["None", "module", "param_list", "optimizer_class"],
)
def test_not_an_optimizer(optimizer: object) -> None:
    with pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.Optimizer"):
        TLR(optimizer, update_every=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        (lambda: nn.Linear(2, 2).parameters(), r"wraps an optimizer, not parameters.*ntlr\.wrap\('SGD'"),
        (lambda: list(nn.Linear(2, 2).parameters()), "wraps an optimizer, not parameters"),
        (lambda: torch.optim.AdamW, r"build it first, TLR\(torch\.optim\.AdamW\(model\.parameters\(\)"),
    ],
    ids=["parameters", "param_list", "optimizer_class"],
)
def test_a_new_users_likely_mistakes_say_what_to_pass(given: Callable[[], object], hint: str) -> None:
    with pytest.raises(TypeError, match=hint):
        TLR(given(), update_every=5)  # type: ignore[arg-type]


def test_already_a_tlr() -> None:
    with pytest.raises(TypeError, match="already a TLR"):
        TLR(TLR(_sgd(), update_every=5), update_every=5)


def test_inner_group_without_lr() -> None:
    inner = _sgd()
    del inner.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="'lr'"):
        TLR(inner, update_every=5)
