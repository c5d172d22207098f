"""Checksummed downloads into the cache: try each mirror, verify, then move into place atomically."""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .integrity import check_digest

# Connect/read timeout: machines without internet must get the not-found message quickly, not hang.
TIMEOUT_S = 15.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name in the cache folder, its mirrors and its published digest."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError(f"urls must name at least one mirror for {self.filename!r}")
        if self.md5 is None and self.sha256 is None:
            raise ValueError(f"a download of {self.filename!r} needs an md5 or sha256 to verify")

    def verify(self, path: Path) -> None:
        if self.sha256 is not None:
            check_digest(path, self.sha256, "sha256")
        if self.md5 is not None:
            check_digest(path, self.md5, "md5")


class DownloadFailed(OSError):
    """No mirror could deliver a file (network unreachable, HTTP error): the data is simply not available."""


def _urlopen(url: str, timeout: float):  # the seam tests replace to serve generated files
    return urllib.request.urlopen(url, timeout=timeout)


def fetch(remote: RemoteFile, folder: Path) -> Path:
    """Return ``folder/remote.filename``, downloading and verifying it first unless a verified copy is there.

    A digest mismatch raises DataError (the partial file is removed, never used); unreachable mirrors raise
    DownloadFailed listing each URL's error.
    """
    target = folder / remote.filename
    if target.is_file():
        remote.verify(target)  # a corrupt earlier download is an error, not something to reuse silently
        return target
    folder.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url in remote.urls:
        handle, partial_name = tempfile.mkstemp(prefix=f".{remote.filename}.", suffix=".part", dir=folder)
        partial = Path(partial_name)
        try:
            with os.fdopen(handle, "wb") as out, _urlopen(url, TIMEOUT_S) as response:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as error:
            partial.unlink(missing_ok=True)
            errors.append(f"{url}: {getattr(error, 'reason', error)}")
            continue
        try:
            remote.verify(partial)
        except DataError as error:
            partial.unlink(missing_ok=True)
            raise DataError(f"downloaded {url} but it failed verification: {error}") from None
        os.replace(partial, target)
        return target
    raise DownloadFailed("; ".join(errors))
