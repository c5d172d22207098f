"""Sharded parameters at a meta-step: local views of the window buffers and the reduction of ``a``, ``b``.

TLR's inner products ``a = <u_old, u_new>`` and ``b = <u_old, u_old>`` are sums over every entry of a
param group. When the parameters are replicated (single process, DDP, the replicate dim of HSDP) each
process already holds every entry, so its local sums are the global ones. When they are sharded
(FSDP2/DTensor ``Shard`` placements, FSDP1/ZeRO flat shards) each process holds a disjoint piece and the
local sums must be added over the processes that hold the other pieces, and over no one else: an
all-reduce over the world in HSDP would count every replica once more.

This module decides, per parameter, which process groups complete its sum (its *reduction key*), and
adds the stacked per-group partial sums over them with one ``all_reduce`` per distinct key, so a plain
FSDP2 model costs one collective per meta-step.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeGuard

import torch
from torch import Tensor

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup
    from torch.distributed.tensor import DTensor

__all__ = [
    "ReductionKey",
    "check_process_group",
    "group_by_key",
    "is_dtensor",
    "local_tensor",
    "local_tensors",
    "reduce_partial_sums",
    "reduction_key",
]

# The process groups whose all-reduces, applied one after another, complete a parameter's sums. Empty
# when the parameter is replicated. Process groups hash by identity, and every rank builds the same key
# for the same parameter, so ranks issue the same collectives in the same order.
ReductionKey = tuple[object, ...]


def _dtensor_type() -> type | None:
    # Importing torch.distributed.tensor costs seconds; a DTensor can only exist once someone imported
    # it, so look it up instead of importing it with ntlr.
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def is_dtensor(tensor: Tensor) -> TypeGuard[DTensor]:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor`` (False when DTensor is unavailable)."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def local_tensor(tensor: Tensor) -> Tensor:
    """This process's piece of ``tensor``: the local shard of a DTensor (sharing its storage), else itself.

    In-place writes to the returned tensor land in the DTensor, which is how the window buffers stay
    DTensors in ``optimizer.state`` (so distributed checkpointing saves them like ``exp_avg``) while the
    meta-step works on plain local tensors.
    """
    return tensor.to_local() if is_dtensor(tensor) else tensor


def local_tensors(tensors: Sequence[Tensor]) -> list[Tensor]:
    """:func:`local_tensor` of each of ``tensors``."""
    # One type test a tensor, no call: a small model's meta-step pays this per tensor, and torch.optim
    # imports DTensor itself, so "never imported" is rarely the case.
    dtensor = _dtensor_type()
    if dtensor is None or not any(isinstance(tensor, dtensor) for tensor in tensors):
        return list(tensors)
    return [local_tensor(tensor) for tensor in tensors]


def check_process_group(process_group: object) -> None:
    """Validate TLR's ``process_group`` argument: ``None`` or an initialised ``ProcessGroup``."""
    if process_group is None:
        return
    if not torch.distributed.is_available():
        raise ValueError("process_group was given but torch.distributed is not available in this build")
    if not isinstance(process_group, torch.distributed.ProcessGroup):
        raise TypeError(
            "process_group must be a torch.distributed.ProcessGroup or None, "
            f"got {type(process_group).__name__}"
        )


def reduction_key(param: Tensor, process_group: ProcessGroup | None) -> ReductionKey:
    """The process groups over which ``param``'s local partial sums must be added.

    A DTensor follows its placements: each mesh dim it is sharded over (``Shard``, strided shards)
    contributes that dim's group, each replicated dim none; so HSDP's ``(Replicate(), Shard(0))`` reduces
    over the shard dim only. A plain tensor is a flat shard of ``process_group`` when one was given (FSDP1
    ``use_orig_params``/ZeRO style), else replicated. Size-1 groups are dropped: they add nothing.
    """
    if is_dtensor(param):
        groups = []
        mesh = param.device_mesh
        for mesh_dim, placement in enumerate(param.placements):
            if placement.is_replicate():
                continue
            if placement.is_partial():
                raise ValueError(
                    "TLR cannot train the rate of a parameter with a Partial placement: its local "
                    "values are not a piece of the weights (redistribute it to Shard or Replicate)"
                )
            if mesh.size(mesh_dim) > 1:
                groups.append(mesh.get_group(mesh_dim))
        return tuple(groups)
    if process_group is not None and torch.distributed.get_world_size(process_group) > 1:
        return (process_group,)
    return ()


def reduce_partial_sums(
    partial_sums: dict[ReductionKey, dict[int, Tensor]], num_groups: int, width: int = 3
) -> Tensor:
    """Sum the per-group partial sums (``width`` of them: TLR's ``[a, b, c]``) over the processes of
    each reduction key.

    ``partial_sums[key][i]`` is the vector of param group ``i`` over its parameters with that key (missing
    when it has none). Returns the ``[num_groups, width]`` global sums, still on the device. One
    ``all_reduce`` per distinct non-empty key, for all groups at once.
    """
    totals: list[Tensor] = []
    for key, by_group in partial_sums.items():
        device = next(iter(by_group.values())).device
        dtype = next(iter(by_group.values())).dtype
        zeros = torch.zeros(width, dtype=dtype, device=device)
        stacked = torch.stack([by_group[i].to(device) if i in by_group else zeros for i in range(num_groups)])
        for group in key:
            torch.distributed.all_reduce(stacked, op=torch.distributed.ReduceOp.SUM, group=group)
        totals.append(stacked)
    if not totals:
        return torch.zeros(num_groups, width, dtype=torch.float64)
    total = totals[0]
    for other in totals[1:]:
        total = total + other.to(total.device)
    return total


def group_by_key(
    params: Sequence[Tensor], process_group: ProcessGroup | None
) -> dict[ReductionKey, list[int]]:
    """Indices of ``params`` bucketed by reduction key, in first-seen order (the same on every rank)."""
    if process_group is None:
        dtensor = _dtensor_type()
        if dtensor is None or not any(isinstance(param, dtensor) for param in params):
            return {(): list(range(len(params)))} if params else {}  # every key would be the empty one
    buckets: dict[ReductionKey, list[int]] = {}
    for index, param in enumerate(params):
        buckets.setdefault(reduction_key(param, process_group), []).append(index)
    return buckets
