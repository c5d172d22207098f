"""What every data set loader returns: whole splits as in-memory tensors, batched by indexing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["ArrayData", "DataError", "DataNotFoundError", "TranslationData"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


class DataError(RuntimeError):
    """A data file exists but is wrong: checksum mismatch, truncated, malformed."""


class DataNotFoundError(FileNotFoundError):
    """A data set was not found; the message lists every place looked and how to get it."""


@dataclass
class ArrayData:
    """An image classification data set held in memory.

    Inputs are uint8 ``(N, C, H, W)`` tensors (pixels 0..255), targets int64 ``(N,)``. ``mean``/``std``
    are per-channel statistics on the 0..1 scale, for the workload's normalisation.
    """

    name: str
    train_inputs: Tensor
    train_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""  # where it was loaded from, for the run record
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TranslationData:
    """A sentence-pair data set as padded token-id tensors (int64, ``PAD`` = 0).

    Source rows are ``(N, Ls)``; target rows ``(N, Lt)`` start with ``BOS`` and end with ``EOS``.
    ``*_vocab[i]`` is the token of id ``i``; ids 0..3 are ``SPECIALS``.
    """

    name: str
    train_src: Tensor
    train_tgt: Tensor
    valid_src: Tensor
    valid_tgt: Tensor
    src_vocab: list[str]
    tgt_vocab: list[str]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
