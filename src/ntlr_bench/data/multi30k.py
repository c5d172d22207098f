"""Multi30k (task 1) German→English: line-aligned ``train``, ``val`` and ``test_2016_flickr`` text files."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from .arrays import subset_indices
from .base import TranslationData
from .download import RemoteFile
from .errors import DataError
from .integrity import verify_beside
from .text import tokenize_pairs, translation_data

SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}  # our name → file stem
REQUIRED = ("train", "valid")
_BASE = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
# MD5s of the published gzip files, as torchtext lists them.
_MD5 = {
    "train.de.gz": "81ff90b99829c0cd4b1b587d394afd39",
    "train.en.gz": "0065d13af80720a55ca8153d126e6627",
    "val.de.gz": "6e0e229eb049e3fc99a1ef02fb2d5f91",
    "val.en.gz": "2b69aa9253948ac9f67e94917272dd40",
    "test_2016_flickr.de.gz": "efd67d314d98489b716b145475101932",
    "test_2016_flickr.en.gz": "ff2c0fcb4893a13bd73414306bc250ae",
}
REMOTE = tuple(RemoteFile(name, (_BASE + name,), md5=md5) for name, md5 in _MD5.items())


def _file(folder: Path, stem: str, lang: str) -> Path | None:
    for name in (f"{stem}.{lang}", f"{stem}.{lang}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def probe_multi30k(path: Path) -> Path | str | None:
    if not path.is_dir():
        return None
    needed = [f"{SPLITS[s]}.{lang}" for s in REQUIRED for lang in ("de", "en")]
    missing = [name for name in needed if _file(path, *name.rsplit(".", 1)) is None]
    if not missing:
        return path
    return None if len(missing) == len(needed) else "incomplete: missing " + ", ".join(missing)


def _read_lines(path: Path) -> list[str]:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return raw.decode("utf-8").splitlines()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        raise DataError(f"{path}: unreadable text file ({error})") from None


def load_multi30k(folder: Path, limit: int | None) -> TranslationData:
    splits, files, sizes, dropped = {}, [], {}, {}
    for split, stem in SPLITS.items():
        de_path, en_path = _file(folder, stem, "de"), _file(folder, stem, "en")
        if de_path is None or en_path is None:
            if split in REQUIRED:
                raise DataError(f"{folder}: missing {stem}.de or {stem}.en")
            continue
        files += [de_path, en_path]
        german, english = _read_lines(de_path), _read_lines(en_path)
        if len(german) != len(english):
            raise DataError(
                f"{folder}: {de_path.name} has {len(german)} lines but {en_path.name} has {len(english)}"
            )
        sources, targets, dropped[split] = tokenize_pairs(list(zip(german, english)))
        sizes[split] = len(sources)
        keep = subset_indices(len(sources), limit)
        if keep is not None:
            sources, targets = [sources[i] for i in keep], [targets[i] for i in keep]
        splits[split] = (sources, targets)
    verified = verify_beside(files)
    meta = {
        "format": "multi30k text",
        "full_sizes": sizes,
        "empty_pairs_dropped": dropped,
        "checksums_verified": verified,
        "limit": limit,
    }
    return translation_data("multi30k", splits, source=str(folder), meta=meta)
