"""In-memory batching and per-batch augmentation: no per-sample Python in the hot loop."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["crop_flip", "index_batches", "normalize"]


def index_batches(
    n: int, batch_size: int, *, generator: torch.Generator | None, shuffle: bool
) -> Iterator[Tensor]:
    """Index tensors covering ``range(n)`` in batches (the last one may be short)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (B, C, H, W) → float, standardised per channel (``mean``/``std`` shaped (1, C, 1, 1))."""
    return (images.float().div_(255.0) - mean) / std


def crop_flip(images: Tensor, *, padding: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Random crop after zero padding and random horizontal flip, one draw per image, all on tensors."""
    b, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device="cpu").to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device="cpu").to(images.device)
    rows = dy[:, None] + torch.arange(h, device=images.device)[None, :]  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=images.device)[None, :]  # (B, W)
    flip = torch.rand(b, generator=generator, device="cpu").to(images.device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None]
    # Advanced indexing gathers each image's window in one op: (B, H, W, C) → (B, C, H, W).
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
