"""The state TLR keeps, in one place: the keys it adds to each param group and to each parameter's state.

Every key starts with ``tlr_``, out of the inner optimizer's way, and holds a plain value (numbers, lists,
dicts of floats, tensors), so ``state_dict``/``load_state_dict`` and DCP round-trip it. In a state dict
each entry keeps one structure from construction on, since DCP loads a checkpoint into the structure of a
fresh optimizer's state dict: ``tlr_rule_state`` is a list of ``[key, value]`` pairs there (a dict's keys
appear as the rule trains), and ``tlr_loss_sum`` a tensor (zeros before the first loss). The two
``TypedDict`` classes below are the schema; TLR reads and writes these keys by the constants beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from torch import Tensor

__all__ = ["GroupState", "ParamState", "plain_state_dict"]

# Every key below starts with it.
PREFIX = "tlr_"
FACTOR = "tlr_factor"
STEPS = "tlr_steps"
WINDOW_STEPS = "tlr_window_steps"
WINDOW_LR_SUM = "tlr_window_lr_sum"
META_STEPS = "tlr_meta_steps"
SCHEDULE_PEAK = "tlr_schedule_peak"
RULE_STATE = "tlr_rule_state"
LOSS_SUM = "tlr_loss_sum"
LOSS_COUNT = "tlr_loss_count"
PREV_LOSS = "tlr_prev_loss"
SNAPSHOT = "tlr_snapshot"
PREV_UPDATE = "tlr_prev_update"
# The window's running loss sums: [Σ loss, Σ loss², first loss, last loss, Σ (loss − previous)², Σ i·loss].
LOSS_SUMS = 6


class GroupState(TypedDict, total=False):
    """The keys TLR adds to a param group (beside the inner optimizer's own ``lr``, ``params``, ...)."""

    tlr_factor: float  # the trained factor: effective lr = group["lr"] × tlr_factor
    tlr_steps: int  # counted steps (lr ≠ 0, not skipped by the inner optimizer)
    tlr_window_steps: int  # counted steps in the current window
    tlr_window_lr_sum: float  # Σ effective lr over the window (its mean normalises the displacement)
    tlr_meta_steps: int  # windows closed so far (0: the first window is open)
    tlr_schedule_peak: float  # the highest scheduled rate (lr × the anneal ramp) seen: below it, no climbs
    tlr_rule_state: dict[str, float]  # the rule's own floats (RobustRule: consecutive rollbacks, ...)
    # Only when the rule or the loss guard reads losses:
    tlr_loss_sum: Tensor | None  # the LOSS_SUMS running sums, on the loss's device (no host sync)
    tlr_loss_count: int  # losses observed in the window
    tlr_prev_loss: list[float] | None  # the previous kept window's WindowLoss fields


class ParamState(TypedDict):
    """The buffers TLR adds to a parameter's state, once the inner optimizer has initialised it."""

    tlr_snapshot: Tensor  # the weights at the window's start
    tlr_prev_update: Tensor  # u_old: the previous window's displacement over its mean rate


GROUP_DEFAULTS: dict[str, Any] = {
    FACTOR: 1.0,
    STEPS: 0,
    WINDOW_STEPS: 0,
    WINDOW_LR_SUM: 0.0,
    META_STEPS: 0,
    SCHEDULE_PEAK: 0.0,
}
LOSS_DEFAULTS: dict[str, Any] = {LOSS_SUM: None, LOSS_COUNT: 0, PREV_LOSS: None}


def plain_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A :class:`ntlr.TLR` state dict as the inner optimizer alone would save it, to hand training over to it.

    Each group's ``lr`` becomes the rate TLR was training at (``lr × tlr_factor``) and every ``tlr_*``
    entry is dropped. Loading a TLR state dict straight into the bare optimizer is torch's code, which
    keeps whatever keys it finds: the ``tlr_*`` entries would ride along unused (the window buffers cost
    two copies of the weights) and ``lr`` would be the scheduled rate, not the trained one.

    The argument is not modified; tensors are shared with it, not copied.
    """
    if not (isinstance(state_dict, Mapping) and "state" in state_dict and "param_groups" in state_dict):
        raise ValueError("state_dict must be an optimizer state dict with 'state' and 'param_groups' entries")
    groups = []
    for group in state_dict["param_groups"]:
        plain = {key: value for key, value in group.items() if not key.startswith(PREFIX)}
        if FACTOR in group and "lr" in group:
            plain["lr"] = group["lr"] * group[FACTOR]
        groups.append(plain)
    state = {
        index: {key: value for key, value in param_state.items() if not str(key).startswith(PREFIX)}
        if isinstance(param_state, Mapping)
        else param_state
        for index, param_state in state_dict["state"].items()
    }
    return {**state_dict, "state": state, "param_groups": groups}
