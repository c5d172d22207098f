"""Where a data set is looked for, in order, and the not-found message that lists every place looked.

Order: the ``data_dir`` argument (the data set's own folder, or a parent holding ``<name>/``), each folder in
``NTLR_DATA_DIR`` (parents holding ``<name>/``; several may be joined with ``os.pathsep``), the data set's
system locations (Debian packages), the cache folder ``$NTLR_CACHE_DIR/<name>`` (default
``~/.cache/ntlr/<name>``), then, when allowed, a checksummed download into that cache folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .download import DownloadFailed, RemoteFile, fetch
from .errors import DataNotFoundError

# A probe looks at one candidate path: it returns the path to load (a folder or a file) when the data set is
# there, a short reason when something is there but incomplete, or None when nothing is.
Probe = Callable[[Path], "Path | str | None"]
Loader = Callable[[Any, "int | None"], Any]


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: what the data set is, where it is looked for and how to get it."""

    name: str
    description: str
    loader: Loader  # (located path, or None for a bundled data set; limit) -> data
    probe: Probe | None = None  # None: bundled with a package, nothing to locate
    dir_names: tuple[str, ...] = ()  # folder names under a parent data folder; the first is canonical
    system_paths: tuple[str, ...] = ()
    remote: tuple[RemoteFile, ...] = ()
    how_to_get: str = ""


def cache_root() -> Path:
    configured = os.environ.get("NTLR_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ntlr"


def _under(parent: Path, spec: DatasetSpec) -> list[Path]:
    return [parent / name for name in spec.dir_names or (spec.name,)]


def candidates(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """Every place ``spec`` is looked for, in order, with a label saying why it is looked at."""
    places: list[tuple[str, Path]] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        places.append(("data_dir", root))
        places.extend(("data_dir", path) for path in _under(root, spec))
    for entry in filter(None, os.environ.get("NTLR_DATA_DIR", "").split(os.pathsep)):
        places.extend(("NTLR_DATA_DIR", path) for path in _under(Path(entry).expanduser(), spec))
    places.extend(("system", Path(path)) for path in spec.system_paths)
    places.append(("cache", cache_root() / spec.name))
    return places


def _probe(spec: DatasetSpec, path: Path) -> Path | str | None:
    assert spec.probe is not None
    try:
        return spec.probe(path)
    except OSError as error:  # unreadable folder: report it like any other miss
        return f"unreadable ({error.strerror or error})"


def locate(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None, *, download: bool) -> Path:
    """The path to load ``spec`` from, downloading into the cache when allowed; else DataNotFoundError."""
    looked: list[str] = []
    unset = "NTLR_DATA_DIR" not in os.environ
    for label, path in candidates(spec, data_dir):
        if unset and label != "data_dir":
            looked.append("NTLR_DATA_DIR: (not set)")  # in the order of the search: after data_dir
            unset = False
        found = _probe(spec, path)
        if isinstance(found, Path):
            return found
        looked.append(f"{label}: {path}" + (f" ({found})" if found else " (not found)"))
    if spec.remote:
        target = cache_root() / spec.name
        if not download:
            looked.append("download: skipped (download=False)")
        else:
            try:
                for remote in spec.remote:
                    fetch(remote, target)
                _record_sums(spec.remote, target)
            except (DownloadFailed, OSError) as error:
                looked.append(f"download into {target}: failed ({error})")
            else:
                found = _probe(spec, target)
                if isinstance(found, Path):
                    return found
                looked.append(f"download into {target}: files fetched but not usable ({found})")
    raise DataNotFoundError(
        not_found_message(spec, looked), cli_message=not_found_message(spec, looked, cli=True)
    )


def _record_sums(remotes: tuple[RemoteFile, ...], folder: Path) -> None:
    """Write the published digests beside the downloads, so every later load re-verifies them."""
    for sums_name, attribute in (("MD5SUMS", "md5"), ("SHA256SUMS", "sha256")):
        lines = [f"{getattr(r, attribute)}  {r.filename}\n" for r in remotes if getattr(r, attribute)]
        if lines:
            (folder / sums_name).write_text("".join(lines), encoding="utf-8")


def not_found_message(spec: DatasetSpec, looked: list[str], *, cli: bool = False) -> str:
    """What was looked at and how to get the data: for a Python caller, or with ``cli`` for a user of the
    ``ntlr-bench`` command (its options and commands rather than keyword arguments)."""
    places = "\n".join(f"  - {line}" for line in looked)
    folder = spec.dir_names[0] if spec.dir_names else spec.name
    text = (
        f"data set {spec.name!r} ({spec.description}) was not found. Looked in:\n{places}\n"
        f"How to get it: {spec.how_to_get}\n"
    )
    if cli:
        text += f"Then pass --data-dir DIR with DIR holding {folder}/, or set NTLR_DATA_DIR to such a folder."
        if spec.remote:
            text += (
                f"\nOr, with internet access, 'ntlr-bench download {spec.name}' fetches and checks it into "
                f"{cache_root() / spec.name} (from a machine without, copy that folder there or to a "
                "--data-dir)."
            )
    else:
        text += f"Then pass data_dir=, or set NTLR_DATA_DIR to a folder holding {folder}/."
        if spec.remote:
            text += (
                f"\nOr, with internet access, load({spec.name!r}, download=True) fetches and checks it into "
                f"{cache_root() / spec.name}."
            )
    return text
