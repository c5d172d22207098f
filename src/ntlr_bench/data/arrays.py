"""Helpers shared by the in-memory image loaders: the ``limit`` subset and per-channel statistics."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import ArrayData

LIMIT_SEED = 0


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None; got {limit!r}")


def subset_indices(n: int, limit: int | None) -> np.ndarray | None:
    """Indices of the first ``limit`` items of a fixed-seed permutation, in their original order; None = all.

    A plain prefix would be one class only for class-sorted files, so the draw is random but reproducible.
    """
    check_limit(limit)
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng(LIMIT_SEED).permutation(n)[:limit])


def take(tensor: Tensor, indices: np.ndarray | None) -> Tensor:
    return tensor if indices is None else tensor[torch.from_numpy(indices)]


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of uint8 ``(N, C, H, W)`` images on the 0..1 scale, via histograms."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        shape = tuple(images.shape)
        raise ValueError(f"images must be a uint8 (N, C, H, W) tensor; got {images.dtype} {shape}")
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * levels).sum() / total
        var = (counts * levels.square()).sum() / total - mean.square()
        means.append(float(mean))
        stds.append(float(var.clamp_min(0.0).sqrt()))
    return tuple(means), tuple(stds)


def array_data(
    name: str,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    num_classes: int,
    limit: int | None,
    source: str,
    meta: dict | None = None,
) -> ArrayData:
    """Assemble ArrayData; the statistics use the full training split, so ``limit`` runs normalise alike."""
    mean, std = channel_stats(train[0])
    meta = dict(meta or {})
    meta.update(full_train_size=len(train[1]), full_test_size=len(test[1]), limit=limit)
    train_idx = subset_indices(len(train[1]), limit)
    test_idx = subset_indices(len(test[1]), limit)
    return ArrayData(
        name=name,
        train_inputs=take(train[0], train_idx).contiguous(),
        train_targets=take(train[1], train_idx).to(torch.int64),
        test_inputs=take(test[0], test_idx).contiguous(),
        test_targets=take(test[1], test_idx).to(torch.int64),
        num_classes=num_classes,
        mean=mean,
        std=std,
        source=source,
        meta=meta,
    )
