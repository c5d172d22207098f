"""ImageNet-style trees ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``: listed, not loaded."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .arrays import subset_indices
from .base import ImageFolderData
from .errors import DataError
from .image_tree import is_image_name

VAL_SPLITS = ("val", "validation", "test")


def probe_imagenet(path: Path) -> Path | str | None:
    if not path.is_dir():
        return None
    has_train = (path / "train").is_dir()
    has_val = any((path / name).is_dir() for name in VAL_SPLITS)
    if has_train and has_val:
        return path
    if has_train or has_val:
        return "needs both train/ and val/ folders of <wnid>/ subfolders"
    return None


def _list_split(folder: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    with os.scandir(folder) as entries:
        class_dirs = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for name in class_dirs:
        with os.scandir(folder / name) as entries:
            files[name] = sorted(e.path for e in entries if e.is_file() and is_image_name(e.name))
    return files


def load_imagenet(path: Path, limit: int | None) -> ImageFolderData:
    train_listing = _list_split(path / "train")
    classes = sorted(name for name, files in train_listing.items() if files)
    if not classes:
        raise DataError(f"{path / 'train'}: no class folders with images (.jpg/.jpeg/.png)")
    index = {name: i for i, name in enumerate(classes)}
    val_name = next(name for name in VAL_SPLITS if (path / name).is_dir())
    val_listing = _list_split(path / val_name)
    if not any(val_listing.values()):
        raise DataError(
            f"{path / val_name}: no images in class subfolders; the official validation images come flat and "
            "must first be moved into <wnid>/ folders (e.g. with the devkit's ground-truth labels)"
        )
    unknown = sorted(name for name, files in val_listing.items() if files and name not in index)
    if unknown:
        raise DataError(f"{path / val_name}: classes {unknown[:5]} have no training images")
    splits = {}
    sizes = {}
    for split, listing in (("train", train_listing), ("val", val_listing)):
        paths = [file for name in sorted(listing) for file in listing[name]]
        targets = torch.tensor(
            [index[name] for name in sorted(listing) for _ in listing[name]], dtype=torch.int64
        )
        sizes[split] = len(paths)
        keep = subset_indices(len(paths), limit)
        if keep is not None:
            paths = [paths[i] for i in keep]
            targets = targets[torch.from_numpy(keep)]
        splits[split] = (paths, targets)
    return ImageFolderData(
        name="imagenet",
        root=path,
        classes=classes,
        splits=splits,
        source=str(path),
        meta={"format": "image-folder", "val_folder": val_name, "full_sizes": sizes, "limit": limit},
    )
