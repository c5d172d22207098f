"""What every data set loader returns: whole splits as in-memory tensors, batched by indexing."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from .errors import DataError, DataNotFoundError

__all__ = [
    "ArrayData",
    "CharCorpusData",
    "DataError",
    "DataNotFoundError",
    "ImageFolderData",
    "TranslationData",
]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


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
    # Multi30k ships a fixed test set; data sets without one leave these as None.
    test_src: Tensor | None = None
    test_tgt: Tensor | None = None


@dataclass
class CharCorpusData:
    """A text corpus as character ids: one int64 ``(n,)`` tensor per split, ``vocab[i]`` the character of id
    ``i``. A language model trains on crops of ``train`` and is scored on ``valid``."""

    name: str
    train: Tensor
    valid: Tensor
    vocab: list[str]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def decode(self, ids: Tensor) -> str:
        return "".join(self.vocab[i] for i in ids.tolist())


# The usual ImageNet statistics: computing them over 1.28M files at load time is not an option.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageFolderData:
    """An image classification data set too big for memory: file lists, decoded on the fly.

    ``splits`` maps a split name (``"train"``, ``"val"``) to ``(paths, targets)``; targets are int64 class
    indices into ``classes`` (sorted class folder names). ``batches`` yields uint8 ``(B, 3, S, S)`` images
    and int64 targets, decoded with PIL in DataLoader workers.
    """

    name: str
    root: Path
    classes: list[str]
    splits: dict[str, tuple[list[str], Tensor]]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, split: str) -> tuple[list[str], Tensor]:
        """The files and targets of ``split``; ``"test"`` means the validation split when there is no test."""
        if split == "test" and "test" not in self.splits:
            split = "val"
        if split not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}; got {split!r}")
        return self.splits[split]

    def num_examples(self, split: str = "train") -> int:
        return len(self.split(split)[0])

    def steps_per_epoch(self, batch_size: int, split: str = "train", *, drop_last: bool = False) -> int:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        n = self.num_examples(split)
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        image_size: int = 224,
        train_augment: bool,
        num_workers: int | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass over ``split``: random-resized-crop + flip if ``train_augment``, else resize + crop.

        The order and the augmentation draws depend only on ``seed`` (pass a different one each epoch), not on
        the number of workers. ``num_workers=None`` uses up to 8 worker processes.
        """
        from .streaming import iterate_batches  # PIL and DataLoader machinery only when streaming

        paths, targets = self.split(split)
        return iterate_batches(
            paths,
            targets,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            image_size=image_size,
            train_augment=train_augment,
            num_workers=num_workers,
            drop_last=drop_last,
        )
