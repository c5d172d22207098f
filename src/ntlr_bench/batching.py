"""In-memory batching and per-batch augmentation: no per-sample Python in the hot loop."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["crop_flip", "index_batches", "normalize", "num_batches"]


def num_batches(n: int, batch_size: int, *, drop_last: bool) -> int:
    """How many batches ``index_batches(n, batch_size, drop_last=...)`` yields.

    With ``drop_last`` that is ``n // batch_size``, but at least 1: when there are fewer examples than a
    batch (``n < batch_size``), dropping the short batch would leave nothing to train on, so the one
    batch of all ``n`` examples is kept.
    """
    if drop_last:
        return max(1, n // batch_size) if n > 0 else 0
    return -(-n // batch_size)


def index_batches(
    n: int, batch_size: int, *, generator: torch.Generator | None, shuffle: bool, drop_last: bool = False
) -> Iterator[Tensor]:
    """Index tensors covering ``range(n)`` in batches of ``batch_size``.

    The last batch may be short; ``drop_last=True`` leaves it out, as the authors' training loaders do
    (``DataLoader(drop_last=True)``), except when it is the only batch (``n < batch_size``): then the one
    batch of all ``n`` examples is kept (see ``num_batches``). Evaluation passes keep every example.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)[: num_batches(n, batch_size, drop_last=drop_last)]


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
