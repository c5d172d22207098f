"""Evaluation metrics: classification accuracy, token-level cross-entropy and corpus BLEU."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from torch import Tensor
from torch.nn import functional as F

__all__ = ["accuracy", "corpus_bleu", "detokenize", "token_cross_entropy"]


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Fraction of rows whose arg-max over the last dim of ``logits`` equals ``targets``.

    ``logits`` is ``(..., C)`` and ``targets`` the matching ``(...)`` class ids.
    """
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("logits and targets must be Tensors")
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"targets shape {tuple(targets.shape)} must be logits shape {tuple(logits.shape)} without "
            "its last (class) dimension"
        )
    if targets.numel() == 0:
        raise ValueError("targets is empty; accuracy is undefined")
    return (logits.argmax(dim=-1) == targets).float().mean().item()


def token_cross_entropy(logits: Tensor, targets: Tensor, pad_id: int = 0) -> Tensor:
    """Mean cross-entropy over the non-pad target tokens (differentiable, usable as the training loss).

    ``logits`` is ``(N, L, V)``, ``targets`` ``(N, L)``. Every position whose target is ``pad_id`` is left
    out of both the sum and the count; if all are pad the result is NaN (as ``F.cross_entropy``).
    """
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("logits and targets must be Tensors")
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(
            f"logits must be (N, L, V) and targets (N, L); "
            f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if isinstance(pad_id, bool) or not isinstance(pad_id, numbers.Integral):
        raise TypeError(f"pad_id must be an int, got {type(pad_id).__name__}")
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=int(pad_id))


def _as_id_list(name: str, ids: Sequence[int] | Tensor) -> list[int]:
    if isinstance(ids, Tensor):
        if ids.dim() != 1:
            raise ValueError(f"{name} rows must be 1-D, got shape {tuple(ids.shape)}")
        return [int(i) for i in ids.tolist()]
    return [int(i) for i in ids]


def detokenize(
    ids: Sequence[int] | Tensor, vocab: Sequence[str], *, specials: Sequence[int] = (0, 1, 2), eos_id: int = 2
) -> str:
    """Token ids to a space-joined string: stop at the first ``eos_id``, drop ``specials``."""
    skip = set(specials)
    words = []
    for i in _as_id_list("ids", ids):
        if i == eos_id:
            break
        if i in skip:
            continue
        if not 0 <= i < len(vocab):
            raise ValueError(f"token id {i} is outside the vocabulary (size {len(vocab)})")
        words.append(vocab[i])
    return " ".join(words)


def corpus_bleu(
    hypotheses: Sequence[Sequence[int]] | Tensor,
    references: Sequence[Sequence[int]] | Tensor,
    vocab: Sequence[str],
    *,
    specials: Sequence[int] = (0, 1, 2),
    eos_id: int = 2,
    tokenize: str = "13a",
) -> float:
    """Corpus BLEU (0..100) of id sequences against one reference each, scored by sacrebleu.

    Both sides are detokenised with ``vocab`` (see :func:`detokenize`), so BOS/padding and anything after
    EOS do not count. sacrebleu's standard ``13a`` tokenisation is applied on top, as in published scores.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"hypotheses ({len(hypotheses)}) and references ({len(references)}) differ in length"
        )
    if len(hypotheses) == 0:
        raise ValueError("hypotheses is empty; BLEU is undefined")
    try:
        import sacrebleu  # lazy: only BLEU needs it, and it is an optional (bench) dependency
    except ImportError as err:
        raise ImportError(
            "corpus_bleu needs the 'sacrebleu' package: pip install sacrebleu (or pip install 'ntlr[bench]')"
        ) from err
    hyp_text = [detokenize(h, vocab, specials=specials, eos_id=eos_id) for h in hypotheses]
    ref_text = [detokenize(r, vocab, specials=specials, eos_id=eos_id) for r in references]
    # Our sentences are the tokenizer's words joined by spaces (no detokenizer exists for them), which
    # sacrebleu flags with a warning on every call; hypotheses and references are treated alike.
    return float(sacrebleu.corpus_bleu(hyp_text, [ref_text], tokenize=tokenize, force=True).score)
