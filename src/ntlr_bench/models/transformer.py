"""The paper's translation model: the PyTorch translation tutorial's Seq2Seq Transformer.

Token embeddings scaled by sqrt(d_model), sinusoidal positional encoding (Vaswani et al., 2017), an
``nn.Transformer`` encoder-decoder and a linear generator to target-vocabulary logits. The model owns its
masks: causal for the decoder, key padding from ``pad_id`` for both sides.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._checks import check_positive_int, check_probability

__all__ = ["PositionalEncoding", "Seq2SeqTransformer"]


class PositionalEncoding(nn.Module):
    """Adds the fixed sine/cosine position code to ``(N, L, d_model)`` inputs, then dropout."""

    table: Tensor  # a buffer (registered in __init__)

    def __init__(self, d_model: int, dropout: float, max_len: int) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        inv_freq = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
        )
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq)
        # A buffer, not a parameter: it moves with .to(device) and is saved, but is never trained.
        self.register_buffer("table", table.unsqueeze(0), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.max_len = max_len

    def forward(self, x: Tensor) -> Tensor:
        length = x.size(1)
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds the model's max_len={self.max_len}")
        return self.dropout(x + self.table[:, :length])


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer over token ids, batch first.

    ``forward(src, tgt_in)`` takes ``src`` ``(N, Ls)`` and the shifted target ``tgt_in`` ``(N, Lt)``
    (starting with BOS) and returns logits ``(N, Lt, tgt_vocab_size)``; position ``t`` predicts target
    token ``t + 1``. Positions holding ``pad_id`` are masked as keys everywhere.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        pad_id: int = 0,
        max_len: int = 256,
    ) -> None:
        super().__init__()
        src_vocab_size = check_positive_int("src_vocab_size", src_vocab_size)
        tgt_vocab_size = check_positive_int("tgt_vocab_size", tgt_vocab_size)
        d_model = check_positive_int("d_model", d_model)
        nhead = check_positive_int("nhead", nhead)
        if d_model % nhead != 0 or d_model % 2 != 0:
            raise ValueError(f"d_model must be even and divisible by nhead={nhead}, got {d_model}")
        num_encoder_layers = check_positive_int("num_encoder_layers", num_encoder_layers)
        num_decoder_layers = check_positive_int("num_decoder_layers", num_decoder_layers)
        dim_feedforward = check_positive_int("dim_feedforward", dim_feedforward)
        dropout = check_probability("dropout", dropout)
        if isinstance(pad_id, bool) or not isinstance(pad_id, int):
            raise TypeError(f"pad_id must be an int, got {type(pad_id).__name__}")
        if not (0 <= pad_id < src_vocab_size and pad_id < tgt_vocab_size):
            raise ValueError(f"pad_id must be a valid id in both vocabularies, got {pad_id}")
        max_len = check_positive_int("max_len", max_len)

        self.d_model, self.pad_id, self.max_len = d_model, pad_id, max_len
        self.src_embedding = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, dropout, max_len)
        self.transformer = nn.Transformer(
            d_model=d_model,
            nhead=nhead,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            batch_first=True,
        )
        # The nested-tensor inference path is a prototype that warns on every eval call; the dense masked
        # path computes the same values at non-pad positions, in train and eval mode alike.
        self.transformer.encoder.enable_nested_tensor = False
        self.transformer.encoder.use_nested_tensor = False
        self.generator = nn.Linear(d_model, tgt_vocab_size)
        # The tutorial's initialisation: Xavier-uniform for every matrix (embeddings included).
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def _check_ids(self, name: str, ids: Tensor) -> None:
        if not isinstance(ids, Tensor):
            raise TypeError(f"{name} must be a Tensor of token ids, got {type(ids).__name__}")
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"{name} must be an int64 (N, L) tensor, got {tuple(ids.shape)} {ids.dtype}")

    def _embed(self, embedding: nn.Embedding, ids: Tensor) -> Tensor:
        return self.positional_encoding(embedding(ids) * math.sqrt(self.d_model))

    def _causal_mask(self, length: int, device: torch.device) -> Tensor:
        # Boolean, True = may not attend; the same dtype as the padding masks avoids PyTorch's mixing path.
        return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device), diagonal=1)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Run the encoder; returns the memory ``(N, Ls, d_model)`` and its padding mask ``(N, Ls)``."""
        self._check_ids("src", src)
        src_padding = src == self.pad_id
        # An empty source (all pad) would leave attention nothing to attend to and give NaN; let such a
        # row see its first (pad) position instead.
        src_padding[:, 0] &= ~src_padding.all(dim=1)
        memory = self.transformer.encoder(
            self._embed(self.src_embedding, src), src_key_padding_mask=src_padding
        )
        return memory, src_padding

    def decode(self, tgt_in: Tensor, memory: Tensor, src_padding: Tensor) -> Tensor:
        """Run the decoder and generator on ``tgt_in`` ``(N, Lt)``; returns logits ``(N, Lt, V)``."""
        self._check_ids("tgt_in", tgt_in)
        length = tgt_in.size(1)
        out = self.transformer.decoder(
            self._embed(self.tgt_embedding, tgt_in),
            memory,
            tgt_mask=self._causal_mask(length, tgt_in.device),
            tgt_key_padding_mask=tgt_in == self.pad_id,
            memory_key_padding_mask=src_padding,
            tgt_is_causal=True,
        )
        return self.generator(out)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        if src.size(0) != tgt_in.size(0):
            raise ValueError(f"src and tgt_in batch sizes differ: {src.size(0)} vs {tgt_in.size(0)}")
        memory, src_padding = self.encode(src)
        return self.decode(tgt_in, memory, src_padding)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, max_len: int, bos_id: int = 1, eos_id: int = 2) -> Tensor:
        """Batched greedy decoding: ids ``(N, L)`` with ``L <= max_len``, starting with ``bos_id``.

        Each step appends every row's most likely next token; after a row emits ``eos_id`` it is padded
        with ``pad_id``. Stops once every row has emitted EOS or the length reaches ``max_len`` (at most the
        model's own ``max_len``). Runs in eval mode (no dropout) and restores the previous mode.
        """
        # Capped at the positional table's length, so callers can ask for "reference length + slack".
        max_len = min(check_positive_int("max_len", max_len), self.max_len)
        was_training = self.training
        self.eval()
        try:
            memory, src_padding = self.encode(src)
            ys = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
            finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
            while ys.size(1) < max_len and not bool(finished.all()):
                # Re-decoding the whole prefix each step is O(L^2) but keeps nn.Transformer unmodified.
                next_token = self.decode(ys, memory, src_padding)[:, -1].argmax(dim=-1)
                next_token = next_token.masked_fill(finished, self.pad_id)
                ys = torch.cat([ys, next_token.unsqueeze(1)], dim=1)
                finished |= next_token == eos_id
            return ys
        finally:
            self.train(was_training)
