"""Sentence pairs → TranslationData: a fixed regex tokenizer, frequency vocabularies, padded id tensors."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import BOS, EOS, PAD, SPECIALS, UNK, TranslationData

# Words (letters/digits, with inner apostrophes as in "don't") or single punctuation marks.
_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})
MIN_FREQ = 2

Pair = tuple[str, str]


def tokenize(text: str) -> list[str]:
    """Lowercased words and punctuation marks; deterministic and dependency-free."""
    return _TOKEN.findall(text.translate(_APOSTROPHES).lower())


def build_vocab(sentences: Sequence[Sequence[str]], min_freq: int = MIN_FREQ) -> list[str]:
    """SPECIALS, then tokens seen at least ``min_freq`` times, most frequent first (ties alphabetical)."""
    counts = Counter(token for sentence in sentences for token in sentence)
    kept = [t for t, c in counts.items() if c >= min_freq and t not in SPECIALS]
    kept.sort(key=lambda t: (-counts[t], t))
    return list(SPECIALS) + kept


def encode(sentences: Sequence[Sequence[str]], vocab: Sequence[str], *, bos_eos: bool) -> Tensor:
    """``(N, L)`` int64 ids padded with PAD to the longest row; unknown tokens become UNK."""
    index = {token: i for i, token in enumerate(vocab)}
    rows = [[index.get(token, UNK) for token in sentence] for sentence in sentences]
    if bos_eos:
        rows = [[BOS, *row, EOS] for row in rows]
    width = max((len(row) for row in rows), default=0)
    out = torch.full((len(rows), width), PAD, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
    return out


def tokenize_pairs(
    pairs: Sequence[Pair], max_tokens: int | None = None
) -> tuple[list[list[str]], list[list[str]], int]:
    """Tokenised sources and targets, dropping pairs with an empty side or a side over ``max_tokens``."""
    sources, targets, dropped = [], [], 0
    for src, tgt in pairs:
        s, t = tokenize(src), tokenize(tgt)
        if not s or not t or (max_tokens is not None and (len(s) > max_tokens or len(t) > max_tokens)):
            dropped += 1
            continue
        sources.append(s)
        targets.append(t)
    return sources, targets, dropped


def translation_data(
    name: str,
    splits: dict[str, tuple[list[list[str]], list[list[str]]]],
    *,
    source: str,
    meta: dict,
) -> TranslationData:
    """Vocabularies from the train split only; ``splits`` holds train, valid and optionally test."""
    train_src, train_tgt = splits["train"]
    src_vocab, tgt_vocab = build_vocab(train_src), build_vocab(train_tgt)

    def pair(split: str) -> tuple[Tensor, Tensor]:
        src, tgt = splits[split]
        return encode(src, src_vocab, bos_eos=False), encode(tgt, tgt_vocab, bos_eos=True)

    train, valid = pair("train"), pair("valid")
    test = pair("test") if "test" in splits else (None, None)
    meta = {
        **meta,
        "tokenizer": f"lowercase regex {_TOKEN.pattern!r}",
        "min_freq": MIN_FREQ,
        "sizes": {split: len(src) for split, (src, _) in splits.items()},
    }
    return TranslationData(
        name=name,
        train_src=train[0],
        train_tgt=train[1],
        valid_src=valid[0],
        valid_tgt=valid[1],
        src_vocab=src_vocab,
        tgt_vocab=tgt_vocab,
        source=source,
        meta=meta,
        test_src=test[0],
        test_tgt=test[1],
    )
