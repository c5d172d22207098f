"""The state TLR keeps, in one place: its per-group record, and the keys it writes into state dicts.

A param group holds hyper-parameters only. TLR's own per-group state (the trained factor, counters, the
rule's state, the open window's losses) lives in a :class:`GroupMeta` record of its own, one per param
group (``TLR.group_meta``), and each parameter's two window buffers in its ``state`` under the
``tlr_snapshot`` / ``tlr_prev_update`` keys.

In a state dict the per-group record is written into the group's entry under ``tlr_*`` keys (the
:class:`GroupState` schema), as plain values (numbers, lists, tensors) that ``load_state_dict`` and DCP
round-trip, and which checkpoints written when the record still lived in the param groups hold too. Each
entry keeps one structure from construction on, since DCP loads a checkpoint into the structure of a fresh
optimizer's state dict: ``tlr_rule_state`` is a list of ``[key, value]`` pairs (a dict's keys appear as
the rule trains), and ``tlr_loss_sum`` a tensor (zeros before the first loss).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from torch import Tensor

from .functional import WindowLoss

__all__ = ["GroupMeta", "GroupState", "ParamState", "plain_state_dict"]

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
PREV_SCALE = "tlr_prev_scale"
SNAPSHOT = "tlr_snapshot"
PREV_UPDATE = "tlr_prev_update"
# The window's running loss sums: [Σ loss, Σ loss², first loss, last loss, Σ (loss − previous)², Σ i·loss].
LOSS_SUMS = 6


@dataclass
class GroupMeta:
    """TLR's own state for one param group: what it trains and counts, not a hyper-parameter.

    The open window's losses are not summed step by step: TLR keeps the losses of the steps since the
    oldest open window in one log (appending a detached loss is all a step costs) and sums a group's part
    of it when its window closes. ``loss_start`` is where this group's window begins in that log (an
    absolute index), and ``carried`` holds sums of losses already folded out of the log (a loaded
    checkpoint's open window, or a window longer than the log keeps).
    """

    # the trained factor: effective lr = group["lr"] × factor (× the decay's ramp); a device tensor with
    # host_sync=False
    factor: float | Tensor = 1.0
    steps: int = 0  # counted steps (lr ≠ 0, not skipped by the inner optimizer)
    window_steps: int = 0  # counted steps in the current window
    window_lr_sum: float | Tensor = 0.0  # Σ effective lr over the window (a tensor with a tensor lr)
    meta_steps: int = 0  # windows closed so far (0: the first window is open)
    schedule_peak: float = 0.0  # the highest scheduled rate (lr × the anneal ramp) seen: below it, no climbs
    rule_state: Any = field(default_factory=dict)  # the rule's own (RobustState for the robust rule)
    loss_start: int = 0  # the open window's first loss, as an index into TLR's loss log
    carried: Tensor | None = None  # LOSS_SUMS sums of the open window's losses no longer in the log
    carried_count: int = 0  # how many losses ``carried`` sums
    prev_loss: WindowLoss | None = None  # the previous kept window's loss
    # b = <u_old, u_old> for the next window when known (the last kept window's c), and over how many
    # parameters it was summed; None: sum it again (after a load, or when the parameters changed).
    old_norm: float | None = None
    old_norm_params: int = 0
    # The parameters' tlr_prev_update buffers hold u_old times this: the raw displacement of the last kept
    # window, whose mean rate it is (storing it so spares the meta-step a pass over the weights); 1 where
    # they hold u_old itself, as checkpoints written before it do. A device tensor with host_sync=False.
    prev_scale: float | Tensor = 1.0


class GroupState(TypedDict, total=False):
    """The keys a :class:`GroupMeta` is written under in a state dict's param group entry (beside the
    inner optimizer's own ``lr``, ``params``, ...)."""

    tlr_factor: float  # the trained factor: effective lr = group["lr"] × tlr_factor
    tlr_steps: int  # counted steps (lr ≠ 0, not skipped by the inner optimizer)
    tlr_window_steps: int  # counted steps in the current window
    tlr_window_lr_sum: float  # Σ effective lr over the window (its mean normalises the displacement)
    tlr_meta_steps: int  # windows closed so far (0: the first window is open)
    tlr_schedule_peak: float  # the highest scheduled rate (lr × the anneal ramp) seen: below it, no climbs
    tlr_rule_state: list[list[Any]]  # the rule's state as [field, value] pairs
    tlr_prev_scale: float  # the tlr_prev_update buffers hold u_old times it (1: u_old itself, older files)
    # Only when the rule or the loss guard reads losses:
    tlr_loss_sum: Tensor | None  # the LOSS_SUMS running sums, on the loss's device (no host sync)
    tlr_loss_count: int  # losses observed in the window
    tlr_prev_loss: list[float] | None  # the previous kept window's WindowLoss fields


class ParamState(TypedDict):
    """The buffers TLR adds to a parameter's state, once the inner optimizer has initialised it."""

    tlr_snapshot: Tensor  # the weights at the window's start
    # u_old times the group's tlr_prev_scale: the previous window's displacement (over its mean rate
    # where the scale is 1)
    tlr_prev_update: Tensor


GROUP_DEFAULTS: dict[str, Any] = {
    FACTOR: 1.0,
    STEPS: 0,
    WINDOW_STEPS: 0,
    WINDOW_LR_SUM: 0.0,
    META_STEPS: 0,
    SCHEDULE_PEAK: 0.0,
    PREV_SCALE: 1.0,
}
LOSS_DEFAULTS: dict[str, Any] = {LOSS_SUM: None, LOSS_COUNT: 0, PREV_LOSS: None}


def plain_state_dict(state_dict: Mapping[str, Any] | Any) -> dict[str, Any]:
    """A :class:`ntlr.TLR` state dict as the inner optimizer alone would save it, to hand training over to it.

    ``state_dict`` is the dict, or the :class:`ntlr.TLR` itself (its ``state_dict()`` is taken).

    Each group's ``lr`` becomes the rate TLR was training at (``lr × tlr_factor``) and every ``tlr_*``
    entry is dropped. Loading a TLR state dict straight into the bare optimizer is torch's code, which
    keeps whatever keys it finds: the ``tlr_*`` entries would ride along unused (the window buffers cost
    two copies of the weights) and ``lr`` would be the scheduled rate, not the trained one.

    The argument is not modified; tensors are shared with it, not copied.
    """
    if not isinstance(state_dict, Mapping) and callable(getattr(state_dict, "state_dict", None)):
        state_dict = state_dict.state_dict()
    if not (isinstance(state_dict, Mapping) and "state" in state_dict and "param_groups" in state_dict):
        raise ValueError(
            "state_dict must be an optimizer state dict with 'state' and 'param_groups' entries, or the "
            f"TLR optimizer itself; got {type(state_dict).__name__}"
        )
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
