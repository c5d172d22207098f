"""Decoding image files on the fly in DataLoader workers, with the standard ImageNet crops.

Training: random-resized-crop (area 8–100 %, aspect 3/4–4/3) and a horizontal flip with probability 1/2.
Evaluation: resize the shorter side to ``S * 256 / 224`` and take the centre ``S × S``. Both are done in one
PIL ``resize`` with a crop box. Each example's draws come from a generator seeded by ``(seed, index)``, so
results do not depend on the number of workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .errors import DataError

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
EVAL_RESIZE = 256.0 / 224.0


Box = tuple[float, float, float, float]


def random_resized_box(width: int, height: int, rng: np.random.Generator) -> Box:
    """A crop box ``(left, top, right, bottom)`` as torchvision's RandomResizedCrop draws it."""
    area = width * height
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    # Fallback: the largest centred crop whose aspect ratio lies in RATIO.
    aspect = width / height
    if aspect < RATIO[0]:
        w, h = width, round(width / RATIO[0])
    elif aspect > RATIO[1]:
        w, h = round(height * RATIO[1]), height
    else:
        w, h = width, height
    return (width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2


def center_box(width: int, height: int) -> Box:
    """The region that resize-shorter-side-then-centre-crop keeps, in original pixel coordinates."""
    side = min(width, height) / EVAL_RESIZE
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


class ImageFiles(Dataset):
    def __init__(self, paths: Sequence[str], targets: Tensor, image_size: int, augment: bool, seed: int):
        # One numpy bytes array rather than a list of str: forked workers touching a million Python objects'
        # reference counts would copy the whole list into each worker.
        self.paths = np.array([os.fsencode(p) for p in paths], dtype=np.bytes_)
        self.targets = targets
        self.image_size, self.augment, self.seed = image_size, augment, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        from PIL import Image, UnidentifiedImageError

        path, size = os.fsdecode(self.paths[index]), self.image_size
        try:
            with Image.open(path) as opened:
                if not self.augment:
                    # JPEG draft decoding at reduced scale: never smaller than the region we resize from.
                    need = math.ceil(size * EVAL_RESIZE)
                    opened.draft("RGB", (need, need))
                image = opened.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{path}: cannot decode image ({error})") from None
        if self.augment:
            rng = np.random.default_rng([self.seed, index])
            width, height = image.size
            box = random_resized_box(width, height, rng)
            image = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            box = center_box(*image.size)
            image = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy())
        return pixels, self.targets[index]


def iterate_batches(
    paths: Sequence[str],
    targets: Tensor,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    image_size: int,
    train_augment: bool,
    num_workers: int | None,
    drop_last: bool,
) -> Iterator[tuple[Tensor, Tensor]]:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int; got {image_size!r}")
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0; got {num_workers}")
    if shuffle:
        order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    else:
        order = list(range(len(paths)))
    loader = DataLoader(
        ImageFiles(paths, targets, image_size, train_augment, seed),
        batch_size=batch_size,
        sampler=order,
        num_workers=num_workers,
        drop_last=drop_last,
        persistent_workers=False,
    )
    return iter(loader)  # not a generator: bad arguments fail at the call, not at the first batch
