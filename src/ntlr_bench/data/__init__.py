"""The benchmark's data sets, each loaded whole into memory (ImageNet: listed and streamed).

``load(name)`` looks for a data set in the ``data_dir`` argument, then ``$NTLR_DATA_DIR/<name>/``, then system
folders (Debian packages), then the cache ``$NTLR_CACHE_DIR/<name>/`` (default ``~/.cache/ntlr``), then
downloads it (checksummed) into the cache when ``download`` is true and the data set can be downloaded.
``DataNotFoundError`` lists every place looked and how to get the data; ``DataError`` means a file was found
but is corrupt, truncated or fails its checksum: it is never used.

``limit`` keeps at most that many examples per split: the first ``limit`` of a fixed-seed (0) permutation,
in their original order, so every run with the same limit sees the same examples.
"""

from __future__ import annotations

import os

from .arrays import check_limit
from .base import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    ArrayData,
    CharCorpusData,
    ImageFolderData,
    TranslationData,
)
from .errors import DataError, DataNotFoundError
from .locate import DatasetSpec, cache_root, locate
from .registry import DATASETS
from .text import tokenize

__all__ = [
    "BOS",
    "DATASETS",
    "EOS",
    "PAD",
    "SPECIALS",
    "UNK",
    "ArrayData",
    "CharCorpusData",
    "DataError",
    "DataNotFoundError",
    "DatasetSpec",
    "ImageFolderData",
    "TranslationData",
    "cache_root",
    "load",
    "tokenize",
]


def load(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    limit: int | None = None,
) -> ArrayData | TranslationData | ImageFolderData | CharCorpusData:
    """Load data set ``name`` (one of ``DATASETS``); see the module docstring for where it is looked for."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}; got {name!r}")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path or None; got {type(data_dir).__name__}")
    check_limit(limit)
    spec = DATASETS[key]
    if spec.probe is None:
        return spec.loader(None, limit)
    return spec.loader(locate(spec, data_dir, download=download), limit)
