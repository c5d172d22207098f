"""Param-group layouts that give TLR finer-grained rates (the paper's first "future work" item)."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["per_layer_param_groups"]


def per_layer_param_groups(model: nn.Module, **group_options: Any) -> list[dict[str, Any]]:
    """One param group per module that owns trainable parameters, so TLR trains one rate per layer.

    ``group_options`` (``lr``, ``weight_decay``, ...) are copied into every group. Each group also gets a
    ``name`` key with the module's qualified name, for logging.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    groups = []
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            groups.append({"params": params, "name": name or "<root>", **group_options})
    if not groups:
        raise ValueError("model has no trainable parameters")
    return groups
