"""Where a data set came from, in words that hold on any machine: what a run record keeps instead of a path.

A record is committed beside a report and read elsewhere; a folder of the machine that ran it (its user's
home, a mount point) says nothing there and leaks the machine's layout. The loader's own name, the system
package the data ships in, the download cache, or "a local copy" with what its checksums said, do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath

from .locate import cache_root
from .registry import DATASETS

__all__ = ["describe_origin", "is_path"]


def is_path(source: str) -> bool:
    """Whether ``source`` names a folder or file of some machine (absolute, home-relative, or Windows)."""
    return os.path.isabs(source) or source.startswith("~") or PureWindowsPath(source).is_absolute()


def describe_origin(dataset: str, source: str, checksums_verified: Sequence[str] | None = None) -> str:
    """``source`` (a loader's name, or the path it loaded) in portable words.

    ``checksums_verified``: the files the loader checked against a checksum file beside them (the data's
    ``meta["checksums_verified"]``); ``None`` where the loader does not say (records written before it
    did), and an empty list where there was nothing to check against.
    """
    if not source:
        return "source not recorded"
    if not is_path(source):
        return source
    spec = DATASETS.get(dataset)
    if spec is not None and source in spec.system_paths:
        package = re.search(r"apt install ([\w.+-]+)", spec.how_to_get)
        return f"Debian's {package.group(1)} package" if package else "a system package"
    path = Path(source)
    archive = f" of {path.name}" if path.suffix in (".gz", ".tar", ".zip") else ""
    place = "the download cache" if _under(path, cache_root()) else "a local copy"
    if checksums_verified is None:
        return f"{place}{archive}, checksums not recorded"
    if not checksums_verified:
        return f"{place}{archive}, no checksum file beside it"
    algorithms = sorted({m.group(1) for name in checksums_verified if (m := re.search(r"\((\w+)\)$", name))})
    count = len(checksums_verified)
    return (
        f"{place}{archive}, {count} file{'s' if count > 1 else ''} verified against the "
        f"{'/'.join(algorithms) or 'checksum'} sums beside {'them' if count > 1 else 'it'}"
    )


def _under(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False
