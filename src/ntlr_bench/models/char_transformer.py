"""A small GPT-style character language model: decoder-only, causal, pre-norm, tied embeddings.

Token and learned position embeddings, ``num_layers`` pre-norm Transformer blocks
(``nn.TransformerEncoderLayer`` with ``norm_first=True`` under a causal mask: a decoder-only block is an
encoder block that cannot look ahead), a final LayerNorm, and an output layer that shares the token
embedding's weights (Press & Wolf, 2017), as GPT-2 does. Weights start as GPT-2's: normal with std 0.02,
biases zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_positive_int, check_probability

__all__ = ["CharTransformer"]


class CharTransformer(nn.Module):
    """``forward(ids)`` maps ``(N, L)`` character ids, ``L <= context``, to next-character logits
    ``(N, L, vocab_size)``: position ``t`` sees only positions ``<= t``."""

    causal_mask: Tensor  # a buffer (registered in __init__)

    def __init__(
        self,
        vocab_size: int,
        *,
        context: int = 64,
        d_model: int = 128,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        vocab_size = check_positive_int("vocab_size", vocab_size)
        self.context = check_positive_int("context", context)
        d_model = check_positive_int("d_model", d_model)
        nhead = check_positive_int("nhead", nhead)
        if d_model % nhead:
            raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead})")
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(self.context, d_model)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        block = nn.TransformerEncoderLayer(
            d_model,
            nhead,
            check_positive_int("dim_feedforward", dim_feedforward),
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # The nested-tensor fast path is for padded batches, and PyTorch disables it under norm_first anyway.
        self.blocks = nn.TransformerEncoder(
            block, check_positive_int("num_layers", num_layers), enable_nested_tensor=False
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.token.weight
        mask = torch.full((self.context, self.context), float("-inf")).triu(1)
        self.register_buffer("causal_mask", mask, persistent=False)
        self.apply(_init_weights)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dim() != 2:
            raise ValueError(f"ids must be (batch, length), got shape {tuple(ids.shape)}")
        length = ids.size(1)
        if not 1 <= length <= self.context:
            raise ValueError(f"ids' length {length} must be in 1..context={self.context}")
        positions = torch.arange(length, device=ids.device)
        x = self.dropout(self.token(ids) + self.position(positions))
        x = self.blocks(x, mask=self.causal_mask[:length, :length], is_causal=True)
        return self.head(self.norm(x))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
