"""German→English example sentences from the Ding dictionary file shipped by Debian's ``trans-de-en``.

Each line is ``German entries :: English entries``; ``|`` separates aligned sub-entries on both sides, ``;``
separates synonyms, and ``{f}``, ``[coll.]``, ``<...>``, ``(...)`` are annotations. Most sub-entries are
words or phrases; the sentence pairs are the example sentences (a capitalised German clause ending in
``.``, ``!`` or ``?`` whose English also ends so). Only those are used: a dictionary entry is no translation
example.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .arrays import subset_indices
from .base import TranslationData
from .errors import DataError
from .text import Pair, tokenize_pairs, translation_data

FILE_NAMES = ("de-en", "de-en.txt", "de-en.txt.gz")
MAX_TOKENS = 30
VALID_FRACTION = 0.05
SPLIT_SEED = 0

_ANNOTATION = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]|<[^<>]*>")
_PARENS = re.compile(r"\([^()]*\)")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")
_SENTENCE_END = re.compile(r"[.!?][\"'“”‘’»«]?$")
_HAS_END = re.compile(r"[.!?]")
_WORD = re.compile(r"[^\W\d_]{2,}")


def _clean(text: str) -> str:
    text = _ANNOTATION.sub(" ", text)
    while True:  # nested parentheses, innermost first
        stripped = _PARENS.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    text = text.split("; ")[0]  # the first of several synonymous renderings
    return _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text)).strip()


def _is_sentence(text: str) -> bool:
    if not text or not text[0].isupper() or not _SENTENCE_END.search(text):
        return False
    return len(_WORD.findall(text)) >= 2


def parse_ding(lines: Iterable[str], where: str = "<lines>") -> tuple[list[Pair], dict[str, int]]:
    """Example sentence pairs (first occurrence of each German sentence) and counts of what was seen."""
    pairs: list[Pair] = []
    seen: set[str] = set()
    stats = {"entries": 0, "sub_entries": 0, "malformed": 0, "duplicates": 0}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        german, sep, english = line.partition(" :: ")
        de_parts, en_parts = german.split(" | "), english.split(" | ")
        if not sep or len(de_parts) != len(en_parts):
            stats["malformed"] += 1
            continue
        stats["entries"] += 1
        for de_raw, en_raw in zip(de_parts, en_parts):
            stats["sub_entries"] += 1
            if not (_HAS_END.search(de_raw) and _HAS_END.search(en_raw)):
                continue  # cheap test first: nine in ten sub-entries are plain words
            de, en = _clean(de_raw), _clean(en_raw)
            if not (_is_sentence(de) and _SENTENCE_END.search(en)):
                continue
            if de in seen:
                stats["duplicates"] += 1
                continue
            seen.add(de)
            pairs.append((de, en))
    if stats["entries"] == 0:
        raise DataError(f"{where}: no 'German :: English' dictionary lines found")
    return pairs, stats


def probe_ding(path: Path) -> Path | None:
    if path.is_file():
        return path
    if path.is_dir():
        return next((path / n for n in FILE_NAMES if (path / n).is_file()), None)
    return None


def read_dictionary(path: Path) -> list[str]:
    """The dictionary file's lines (plain or gzipped UTF-8); DataError when it cannot be read."""
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: unreadable dictionary file ({error})") from None


def load_trans_de_en(path: Path, limit: int | None) -> TranslationData:
    pairs, stats = parse_ding(read_dictionary(path), str(path))
    sources, targets, too_long = tokenize_pairs(pairs, MAX_TOKENS)
    if len(sources) < 2:
        raise DataError(f"{path}: only {len(sources)} usable example sentence pairs")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(sources))
    n_valid = max(1, round(VALID_FRACTION * len(sources)))
    split_idx = {"valid": np.sort(order[:n_valid]), "train": np.sort(order[n_valid:])}
    splits = {}
    for split, idx in split_idx.items():
        keep = subset_indices(len(idx), limit)
        if keep is not None:
            idx = idx[keep]
        splits[split] = ([sources[i] for i in idx], [targets[i] for i in idx])
    meta = {
        "format": "ding dictionary (trans-de-en)",
        "pairs_found": len(pairs),
        "pairs_dropped_length": too_long,
        "max_tokens": MAX_TOKENS,
        "valid_fraction": VALID_FRACTION,
        "split_seed": SPLIT_SEED,
        "limit": limit,
        **stats,
    }
    return translation_data("translation_de_en", splits, source=str(path), meta=meta)
