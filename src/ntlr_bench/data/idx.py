"""IDX files (MNIST, Fashion-MNIST): parsing with full validation, and the two data sets built on them."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .arrays import array_data
from .base import ArrayData
from .errors import DataError
from .integrity import verify_beside

# IDX type codes → big-endian numpy dtypes.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes())
        return path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{path} is truncated or not a valid gzip file: {error}") from None


def parse_idx(raw: bytes, where: str = "<bytes>") -> np.ndarray:
    """Decode an IDX buffer; the magic, the dimensions and the exact byte length are all checked."""
    if len(raw) < 4:
        raise DataError(f"{where}: {len(raw)} bytes is too short for an IDX header")
    zero_a, zero_b, type_code, ndim = raw[:4]
    if zero_a or zero_b or type_code not in _DTYPES or ndim == 0:
        raise DataError(f"{where}: bad IDX magic {raw[:4].hex()} (expected 0000<type><ndim>)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{where}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[type_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"{where}: {state}: {len(raw)} bytes, expected {expected} for dims {dims}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(_read(path), str(path))


def idx_file(folder: Path, stem: str) -> Path | None:
    """The gzip or raw copy of an IDX file (also the ``train-images.idx3-ubyte`` spelling)."""
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def probe_idx_folder(path: Path) -> Path | str | None:
    if not path.is_dir():
        return None
    stems = [stem for pair in SPLIT_FILES.values() for stem in pair]
    missing = [stem for stem in stems if idx_file(path, stem) is None]
    if not missing:
        return path
    if len(missing) < len(stems):
        return "incomplete: missing " + ", ".join(f"{stem}[.gz]" for stem in missing)
    return None


def _split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    image_stem, label_stem = SPLIT_FILES[split]
    image_path, label_path = idx_file(folder, image_stem), idx_file(folder, label_stem)
    if image_path is None or label_path is None:
        raise DataError(f"{folder}: missing {image_stem} or {label_stem}")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"{image_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{label_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels), [image_path, label_path]


def load_idx_dataset(name: str, folder: Path, limit: int | None, num_classes: int = 10) -> ArrayData:
    train_x, train_y, train_files = _split(folder, "train")
    test_x, test_y, test_files = _split(folder, "test")
    verified = verify_beside(train_files + test_files)
    if len(train_y) == 0 or len(test_y) == 0:
        raise DataError(f"{folder}: a split has no examples ({len(train_y)} train, {len(test_y)} test)")
    top = int(max(train_y.max(), test_y.max()))
    if top >= num_classes:
        raise DataError(f"{folder}: label {top} out of range for {num_classes} classes")
    return array_data(
        name,
        (train_x, train_y),
        (test_x, test_y),
        num_classes=num_classes,
        limit=limit,
        source=str(folder),
        meta={"format": "idx", "checksums_verified": verified},
    )
