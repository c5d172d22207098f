"""CIFAR-10/100: the official python-pickle batches (folder or tar.gz) or a JPEG/PNG ImageFolder tree.

Tarballs are read in one streaming pass without extracting anything. Trees are decoded once and the
decoded tensors are cached (see ``image_tree``); pickles load fast enough not to need it.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from . import image_tree
from .arrays import array_data
from .base import ArrayData
from .errors import DataError
from .integrity import verify_beside
from .locate import cache_root

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
Split = tuple[Tensor, Tensor]  # inputs, targets


@dataclass(frozen=True)
class CifarVariant:
    name: str
    num_classes: int
    folder: str  # folder inside the official archive
    archive: str  # the official archive's file name
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    names_file: str  # the pickled class names beside the batches
    names_key: str


CIFAR10 = CifarVariant(
    "cifar10",
    10,
    "cifar-10-batches-py",
    "cifar-10-python.tar.gz",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "labels",
    "batches.meta",
    "label_names",
)
CIFAR100 = CifarVariant(
    "cifar100",
    100,
    "cifar-100-python",
    "cifar-100-python.tar.gz",
    ("train",),
    ("test",),
    "fine_labels",
    "meta",
    "fine_label_names",
)


class _ArrayUnpickler(pickle.Unpickler):
    """Only what the CIFAR batches need (dicts, lists, numpy arrays): a pickle cannot run anything else."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        if name == "encode":
            return codecs.encode
        from numpy._core import multiarray  # both spellings map to numpy 2's module

        return getattr(multiarray, name)


def _unpickle_dict(data: bytes, where: str) -> dict:
    try:
        loaded = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{where}: not a readable CIFAR pickle ({error})") from None
    if not isinstance(loaded, dict):
        raise DataError(f"{where}: a CIFAR pickle holds a dict, got {type(loaded).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in loaded.items()}


def parse_names(data: bytes, where: str, variant: CifarVariant) -> list[str] | None:
    """Class names from ``batches.meta``/``meta``; None when they are missing or do not fit."""
    names = _unpickle_dict(data, where).get(variant.names_key)
    if not isinstance(names, list) or len(names) != variant.num_classes:
        return None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def parse_batch(data: bytes, where: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3, 32, 32)`` uint8 images and int64 labels of one pickled CIFAR batch."""
    batch = _unpickle_dict(data, where)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{where}: missing 'data' or {label_key!r} (keys: {sorted(batch)})")
    images, labels = np.asarray(batch["data"]), np.asarray(batch[label_key], dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: expected uint8 data (N, 3072), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise DataError(f"{where}: {len(images)} images but labels of shape {labels.shape}")
    return images.reshape(-1, 3, 32, 32), labels


def _stack(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[Tensor, Tensor]:
    return (
        torch.from_numpy(np.concatenate([b[0] for b in batches])),
        torch.from_numpy(np.concatenate([b[1] for b in batches])),
    )


def _pickle_folder(folder: Path, variant: CifarVariant) -> Path | None:
    for candidate in (folder / variant.folder, folder):
        if all((candidate / f).is_file() for f in variant.train_files + variant.test_files):
            return candidate
    return None


def probe(variant: CifarVariant):
    def probe_cifar(path: Path) -> Path | None:
        if path.is_file():
            return path if path.name.endswith(TAR_SUFFIXES) else None
        if not path.is_dir():
            return None
        found = _pickle_folder(path, variant)
        if found is not None:
            return found
        if (path / variant.archive).is_file():
            return path / variant.archive
        tree = image_tree.find_tree(path)
        if tree is not None:
            return tree
        tars = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(TAR_SUFFIXES))
        return tars[0] if tars else None

    return probe_cifar


def _from_pickles(batches: dict[str, tuple[np.ndarray, np.ndarray]], variant: CifarVariant, where: str):
    missing = [f for f in variant.train_files + variant.test_files if f not in batches]
    if missing:
        raise DataError(f"{where}: CIFAR batches missing: {missing}")
    train = _stack([batches[f] for f in variant.train_files])
    test = _stack([batches[f] for f in variant.test_files])
    return train, test


def _scan_tar(path: Path, variant: CifarVariant):
    """One pass over a tarball: pickled batches if it has them, else tree images. Returns (kind, payload)."""
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names: list[str] | None = None
    items = []
    wanted = set(variant.train_files + variant.test_files) | {variant.names_file}
    try:
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                parent, _, base = member.name.strip("/").rpartition("/")
                in_batch_folder = base in wanted and parent.rpartition("/")[2] in (variant.folder, "")
                is_image = image_tree.is_image_name(base)
                if not (in_batch_folder or is_image):
                    continue
                stream = archive.extractfile(member)
                data = stream.read() if stream is not None else b""
                if in_batch_folder and base == variant.names_file:
                    names = parse_names(data, f"{path}:{member.name}", variant)
                elif in_batch_folder:
                    batches[base] = parse_batch(data, f"{path}:{member.name}", variant.label_key)
                else:
                    item = image_tree.member_item(member.name, data, str(path))
                    if item is not None:
                        items.append(item)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{path} is truncated or not a valid tar archive: {error}") from None
    if batches:
        return "pickle", (*_from_pickles(batches, variant, str(path)), names)
    if items:
        return "tree", image_tree.assemble(items, str(path))
    raise DataError(f"{path}: no CIFAR batches ({variant.folder}/...) and no train/test image tree inside")


def _pickle_dir(path: Path, variant: CifarVariant) -> tuple[Split, Split, dict]:
    files = [path / f for f in variant.train_files + variant.test_files]
    meta: dict = {"format": "pickle", "checksums_verified": verify_beside(files)}
    batches = {f.name: parse_batch(f.read_bytes(), str(f), variant.label_key) for f in files}
    names_path = path / variant.names_file
    if names_path.is_file():
        meta["classes"] = parse_names(names_path.read_bytes(), str(names_path), variant)
    return (*_from_pickles(batches, variant, str(path)), meta)


def _tree_or_tarball(path: Path, variant: CifarVariant) -> tuple[Split, Split, dict]:
    """An image tree (folder) or any tarball; decoded trees go through the cache."""
    meta: dict = {"checksums_verified": verify_beside([path]) if path.is_file() else []}
    cached = image_tree.cache_file(cache_root() / variant.name, path)
    meta["decoded_cache"] = str(cached)
    tree = image_tree.read_cache(cached)
    if tree is not None:
        meta["format"] = "image-tree (decoded cache)"
    elif path.is_dir():
        tree = image_tree.load_tree_dir(path)
        image_tree.write_cache(cached, tree)
        meta["format"] = "image-tree"
    else:
        kind, payload = _scan_tar(path, variant)
        meta["format"] = f"{kind} tar"
        if kind == "pickle":
            train, test, meta["classes"] = payload
            return train, test, meta
        tree = payload
        image_tree.write_cache(cached, tree)
    if len(tree.classes) != variant.num_classes:
        raise DataError(f"{path}: {len(tree.classes)} class folders, expected {variant.num_classes}")
    meta.update(classes=tree.classes, test_split=tree.test_split)
    return (tree.train_inputs, tree.train_targets), (tree.test_inputs, tree.test_targets), meta


def load_cifar(variant: CifarVariant, path: Path, limit: int | None) -> ArrayData:
    if path.is_dir() and _pickle_folder(path, variant) == path:
        train, test, meta = _pickle_dir(path, variant)
    else:
        train, test, meta = _tree_or_tarball(path, variant)
    top = int(max(train[1].max(), test[1].max())) if len(train[1]) and len(test[1]) else -1
    if top < 0 or top >= variant.num_classes:
        raise DataError(f"{path}: empty split or label {top} out of range for {variant.num_classes} classes")
    return array_data(
        variant.name, train, test, num_classes=variant.num_classes, limit=limit, source=str(path), meta=meta
    )
