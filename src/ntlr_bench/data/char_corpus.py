"""The English example sentences of the Ding dictionary (Debian ``trans-de-en``) as a character corpus.

The sentences are those the translation data set uses (see ``ding.parse_ding``), English side, each kept
once. The split is fixed: a seed-0 permutation of the sentences, its first ``VALID_FRACTION`` held out for
validation. Each split is its sentences in that permuted order, each ending in a newline: the dictionary
is sorted by German headword, and in that order neighbouring sentences share words, which a crop spanning
two of them could exploit. The vocabulary is every character of the corpus (both splits, sorted), so a
character seen only in validation still has an id; about 90 characters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .arrays import subset_indices
from .base import CharCorpusData
from .ding import parse_ding, read_dictionary
from .errors import DataError

VALID_FRACTION = 0.05
SPLIT_SEED = 0


def english_sentences(lines: list[str], where: str) -> list[str]:
    """The English side of the dictionary's example sentences, first occurrence of each."""
    pairs, _ = parse_ding(lines, where)
    return list(dict.fromkeys(english for _, english in pairs))


def split_sentences(sentences: list[str], limit: int | None) -> dict[str, list[str]]:
    """``{"train": [...], "valid": [...]}`` by the fixed rule above; ``limit`` keeps at most that many
    sentences per split (a fixed subset, see ``arrays.subset_indices``)."""
    if len(sentences) < 2:
        raise DataError(f"only {len(sentences)} example sentences: need two, one per split")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(sentences))
    n_valid = max(1, round(VALID_FRACTION * len(sentences)))
    splits = {}
    for split, idx in (("valid", order[:n_valid]), ("train", order[n_valid:])):
        keep = subset_indices(len(idx), limit)
        splits[split] = [sentences[i] for i in (idx if keep is None else idx[keep])]
    return splits


def char_corpus(name: str, splits: dict[str, list[str]], *, source: str, meta: dict) -> CharCorpusData:
    texts = {split: "".join(s + "\n" for s in sentences) for split, sentences in splits.items()}
    vocab = sorted(set(texts["train"]) | set(texts["valid"]))
    index = {char: i for i, char in enumerate(vocab)}

    def encode(text: str) -> torch.Tensor:
        return torch.tensor([index[c] for c in text], dtype=torch.int64)

    meta = {
        **meta,
        "sentences": {split: len(s) for split, s in splits.items()},
        "characters": {split: len(t) for split, t in texts.items()},
        "vocab_size": len(vocab),
    }
    return CharCorpusData(
        name, encode(texts["train"]), encode(texts["valid"]), vocab, source=source, meta=meta
    )


def load_ding_chars(path: Path, limit: int | None) -> CharCorpusData:
    sentences = english_sentences(read_dictionary(path), str(path))
    try:
        splits = split_sentences(sentences, limit)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    meta = {
        "format": "ding dictionary (trans-de-en), English example sentences as characters",
        "valid_fraction": VALID_FRACTION,
        "split_seed": SPLIT_SEED,
        "limit": limit,
    }
    return char_corpus("ding_en_chars", splits, source=str(path), meta=meta)
