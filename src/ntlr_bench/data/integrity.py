"""Checksums: hashing files, and verifying them against published sums or a SHA256SUMS file beside them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from .errors import DataError

_BLOCK = 1 << 20
# Checksum files a folder may carry, with the algorithm of their digests.
SUMS_FILES = (
    ("SHA256SUMS", "sha256"),
    ("sha256sums.txt", "sha256"),
    ("MD5SUMS", "md5"),
    ("md5sums.txt", "md5"),
)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_digest(path: Path, expected: str, algorithm: str) -> None:
    """Raise DataError unless ``path`` hashes to ``expected``."""
    actual = file_digest(path, algorithm)
    if actual.lower() != expected.lower():
        raise DataError(
            f"{algorithm.upper()} mismatch for {path}: expected {expected.lower()}, got {actual}. "
            "The file is corrupt or not the published one; delete it and fetch it again."
        )


def read_sums_file(path: Path) -> dict[str, str]:
    """Parse ``sha256sum``-style lines (``<digest>  <name>`` or ``<digest> *<name>``) into name → digest."""
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}:{number}: expected '<digest>  <file name>', got {line!r}")
        digest, name = parts
        sums[Path(name.lstrip("*")).name] = digest.lower()
    return sums


def verify_beside(files: Iterable[Path]) -> list[str]:
    """Verify each file listed in a checksum file of its own folder; return the names verified.

    Local copies are often recompressed (Debian's Fashion-MNIST, this project's MNIST), so they are not held
    to the canonical download digests; a sums file shipped beside them is the authority instead.
    """
    verified: list[str] = []
    sums_by_folder: dict[Path, list[tuple[dict[str, str], str]]] = {}
    for file in files:
        folder = file.parent
        if folder not in sums_by_folder:
            sums_by_folder[folder] = [
                (read_sums_file(folder / sums_name), algorithm)
                for sums_name, algorithm in SUMS_FILES
                if (folder / sums_name).is_file()
            ]
        for sums, algorithm in sums_by_folder[folder]:
            if file.name in sums:
                check_digest(file, sums[file.name], algorithm)
                verified.append(f"{file.name} ({algorithm})")
                break
    return verified
