"""ImageFolder trees ``{train,test}/<class>/*.{jpg,png}`` (a folder or a tarball), decoded once into memory.

Decoding tens of thousands of JPEGs takes a while, so the decoded uint8 tensors are saved in the cache
folder, keyed by the source's path, size and modification time, and the next load just reads them back.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TRAIN_SPLITS = ("train",)
TEST_SPLITS = ("test", "val", "valid", "validation")
# Bump when the decoded layout changes, so stale cache files are ignored rather than misread.
CACHE_FORMAT = 1


@dataclass
class DecodedTree:
    train_inputs: Tensor  # uint8 (N, C, H, W)
    train_targets: Tensor  # int64 (N,)
    test_inputs: Tensor
    test_targets: Tensor
    classes: list[str]
    test_split: str  # which folder name served as the test split


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def decode_image(data: bytes, where: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of an encoded image; undecodable bytes raise DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{where}: cannot decode image ({error})") from None


def tree_splits(root: Path) -> tuple[Path, Path] | None:
    """The train and test folders of an ImageFolder tree rooted at ``root``, if it is one."""
    train = next((root / n for n in TRAIN_SPLITS if (root / n).is_dir()), None)
    test = next((root / n for n in TEST_SPLITS if (root / n).is_dir()), None)
    return (train, test) if train is not None and test is not None else None


def find_tree(folder: Path) -> Path | None:
    """``folder`` itself, or its only subfolder (an extracted ``cifar10-jpg/``), when it holds a tree."""
    if tree_splits(folder) is not None:
        return folder
    subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subfolders) == 1 and tree_splits(subfolders[0]) is not None:
        return subfolders[0]
    return None


def assemble(items: Iterable[tuple[str, str, str, np.ndarray]], source: str) -> DecodedTree:
    """Stack ``(split, class, file name, pixels)`` items; order = sorted class, then sorted file name."""
    by_split: dict[str, list[tuple[str, str, np.ndarray]]] = {}
    for split, label, name, pixels in items:
        by_split.setdefault(split, []).append((label, name, pixels))
    train_name = next((n for n in TRAIN_SPLITS if by_split.get(n)), None)
    test_name = next((n for n in TEST_SPLITS if by_split.get(n)), None)
    if train_name is None or test_name is None:
        found = sorted(by_split) or "none"
        raise DataError(f"{source}: need images in train/<class>/ and test/<class>/; splits found: {found}")
    classes = sorted({label for label, _, _ in by_split[train_name]})
    unknown = sorted({label for label, _, _ in by_split[test_name]} - set(classes))
    if unknown:
        raise DataError(f"{source}: test classes {unknown} have no training images")
    index = {label: i for i, label in enumerate(classes)}
    shapes: dict[tuple[int, ...], str] = {}

    def stack(split: str) -> tuple[Tensor, Tensor]:
        entries = sorted(by_split[split], key=lambda entry: (entry[0], entry[1]))
        for label, name, pixels in entries:
            if pixels.shape not in shapes:
                shapes[pixels.shape] = f"{split}/{label}/{name}"
            if len(shapes) > 1:
                described = ", ".join(f"{shape} at {where}" for shape, where in shapes.items())
                raise DataError(f"{source}: images must share one size to be held in memory; got {described}")
        inputs = torch.from_numpy(np.stack([p for _, _, p in entries])).permute(0, 3, 1, 2).contiguous()
        targets = torch.tensor([index[label] for label, _, _ in entries], dtype=torch.int64)
        return inputs, targets

    train_inputs, train_targets = stack(train_name)
    test_inputs, test_targets = stack(test_name)
    return DecodedTree(train_inputs, train_targets, test_inputs, test_targets, classes, test_name)


def _dir_items(root: Path) -> Iterator[tuple[str, str, str, np.ndarray]]:
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for file in sorted(class_dir.iterdir()):
                if file.is_file() and is_image_name(file.name):
                    pixels = decode_image(file.read_bytes(), str(file))
                    yield split_dir.name, class_dir.name, file.name, pixels


def member_item(name: str, data: bytes, where: str) -> tuple[str, str, str, np.ndarray] | None:
    """A tar member ``.../<split>/<class>/<file>`` as an item, or None when it is not a tree image."""
    parts = name.split("/")
    if len(parts) < 3 or not is_image_name(parts[-1]):
        return None
    if parts[-3] not in TRAIN_SPLITS + TEST_SPLITS:
        return None
    return parts[-3], parts[-2], parts[-1], decode_image(data, f"{where}:{name}")


def source_key(source: Path) -> str:
    """Identity of a source file or folder for the decoded cache: path, sizes and modification times."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{source.resolve()}".encode())
    if source.is_file():
        stat = source.stat()
        digest.update(f"|{stat.st_size}|{stat.st_mtime_ns}".encode())
    else:
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            for filename in sorted(filenames):
                stat = os.stat(os.path.join(dirpath, filename))
                digest.update(f"|{dirpath}/{filename}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def cache_file(cache_folder: Path, source: Path) -> Path:
    return cache_folder / f"decoded-{source_key(source)}.pt"


def read_cache(path: Path) -> DecodedTree | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        tree = DecodedTree(**blob)
    except Exception as error:  # our own cache: a bad one is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable decoded cache {path}: {error}", stacklevel=3)
        return None
    ok = (
        tree.train_inputs.dtype == torch.uint8
        and tree.train_inputs.dim() == 4
        and len(tree.train_inputs) == len(tree.train_targets)
        and len(tree.test_inputs) == len(tree.test_targets)
    )
    return tree if ok else None


def write_cache(path: Path, tree: DecodedTree) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        torch.save(vars(tree), partial)
        os.replace(partial, path)
    except OSError as error:  # a read-only cache only costs the next load its decode time
        warnings.warn(f"could not write decoded cache {path}: {error}", stacklevel=3)


def load_tree_dir(root: Path) -> DecodedTree:
    return assemble(_dir_items(root), str(root))
