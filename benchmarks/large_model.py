"""Large-model benchmark: ``ntlr.TLR`` around AdamW on a GPT-2-small-shaped transformer, on CPU.

The model is a decoder-only transformer built from plain ``torch.nn`` here (no ``transformers``): GPT-2
small's shape, 12 layers, d_model 768, 12 heads, a 50257-token vocabulary and 1024 learned positions,
pre-LayerNorm blocks with biases and a GELU MLP of 4 × d_model, and an output head **tied** to the token
embedding (as GPT-2's), which makes 124,439,808 parameters (``--untied``: 163,037,184). It trains with
``torch.optim.AdamW`` on random token batches (batch 1 × 128 tokens by default). One run measures, side
by side, bare AdamW and ``TLR(AdamW(**inner), update_every=K, **tlr)`` for each mode of ``MODES``
(``mode -> (tlr, inner)``: TLR's keyword arguments and the inner AdamW's). A mode whose inner AdamW has
keyword arguments of its own (``fused=True`` for ``host_sync=False``, which hands AdamW a tensor rate) is
compared with a bare AdamW built with the same ones, a row of its own ("AdamW fused"):

1. **memory**: the optimizer state, summed from the state tensors' bytes (the inner optimizer's keys and
   TLR's ``tlr_*`` buffers apart), per parameter; and the growth of the peak RSS of a fresh process per
   variant (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after building the model and one forward +
   backward pass, then after building the optimizer and taking two of TLR's windows of optimizer steps
   with those grads, two meta-steps included; bare AdamW takes as many steps);
2. **time**, bare and TLR steps interleaved one by one (the order rotating), each variant on its own copy
   of the model, medians over the steps and of the per-step ratios TLR / bare:

   a. a whole training step (zero_grad, forward, backward, ``opt.observe_loss(loss)``, ``opt.step()``)
      at ``update_every=K``; steps where a window closes are kept apart (none close when ``--steps`` <
      K, the usual case at this size);
   b. ``optimizer.step()`` alone (grads preset, never cleared), with TLR at ``update_every=--meta-k``
      so that windows close within a short run;
   c. one meta-step: the time of a step in (b) where a window closed (``opt.history`` grew) minus the
      median of TLR's other steps in (b); reported in bare AdamW steps (the target: at most 2) and as a
      share of a K-step window of whole training steps, ``meta / (K × bare training step)`` (the
      target: at most 0.5 % at K = 100).

   The amortised ratio at K combines them: (TLR's training step + meta-step / K) / bare training step.

``MODES`` maps a mode's name to ``(TLR keyword arguments, inner AdamW keyword arguments)`` (a plain dict:
TLR's alone); a mode ``TLR`` or AdamW rejects is skipped with a note. Each TLR row's ratios, RSS excess
and meta-step share are against the bare row with the same inner keyword arguments (the table's "against"
column). A window's closing is read from TLR's per-group meta-step counters (host integers), not from
``opt.history``, which with ``host_sync=False`` would read the device. The run prints the load average and
the other busy processes at its start and end (the machine may be shared), a markdown table and the exact
command line; no folder of the machine (command lines are shown with file names only).

    python benchmarks/large_model.py [--quick] [--threads 1] [--steps 20] [--k 100] [--batch 1] [--seq 128]
        [--modes exact,...] [--meta-k 10] [--meta-windows 4] [--untied] [--no-rss]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ntlr
from ntlr import TLR

# The TLR variants measured: a name -> (the keyword arguments given to TLR beside update_every, those given
# to the inner AdamW beside lr and weight_decay). A plain dict stands for TLR's alone.
ModeSpec = tuple[dict[str, Any], dict[str, Any]] | dict[str, Any]
MODES: dict[str, ModeSpec] = {
    "exact": ({}, {}),
    # The low-memory mode: window buffers over every 8th coordinate, 1 B per float32 parameter.
    "sketch=8": ({"sketch": 8}, {}),
    # The paper's rule decided on the device: no host sync in any step; the inner optimizer takes the
    # rate as a tensor, which AdamW does with fused=True.
    "no-sync": ({"rule": "paper", "host_sync": False}, {"fused": True}),
}

LR = 3e-4
WEIGHT_DECAY = 0.1
BARE = "AdamW"  # the bare optimizer's row (with inner keyword arguments: "AdamW fused", ...)
TLR_PREFIX = "tlr_"


# -- the model ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPTConfig:
    """The transformer's shape. The defaults are GPT-2 small's."""

    n_layer: int = 12
    d_model: int = 768
    n_head: int = 12
    vocab: int = 50257
    n_ctx: int = 1024
    tied: bool = True  # the output head shares the token embedding's weight (GPT-2's choice)


GPT2_SMALL = GPTConfig()
QUICK = GPTConfig(n_layer=4, d_model=256, n_head=4, vocab=8192, n_ctx=256)


def param_count(cfg: GPTConfig) -> int:
    """The exact parameter count: token and position embeddings, per block two LayerNorms (2d each), the
    QKV projection (d·3d + 3d), the attention output (d·d + d), the MLP (d·4d + 4d, 4d·d + d), a final
    LayerNorm (2d), and the head (d·V, no bias) unless tied: V·d + P·d + L·(12d² + 13d) + 2d [+ V·d]."""
    d = cfg.d_model
    per_block = 12 * d * d + 13 * d
    head = 0 if cfg.tied else cfg.vocab * d
    return cfg.vocab * d + cfg.n_ctx * d + cfg.n_layer * per_block + 2 * d + head


class Block(nn.Module):
    """A pre-LayerNorm transformer block: causal self-attention, then a GELU MLP, each residual."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} is not a multiple of n_head {n_head}")
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.ln_2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.fc_out = nn.Linear(4 * d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, seq, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(d, dim=2)
        heads = (batch, seq, self.n_head, d // self.n_head)
        q, k, v = (t.view(heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_out(y.transpose(1, 2).reshape(batch, seq, d))
        out: Tensor = x + self.fc_out(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))
        return out


class GPT(nn.Module):
    """A GPT-2-shaped decoder-only language model."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab, cfg.d_model)
        self.wpe = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_head) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
        if cfg.tied:
            self.head.weight = self.wte.weight
        for module in self.modules():  # GPT-2's initialisation
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.wte(tokens) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        logits: Tensor = self.head(self.ln_f(x))
        return logits


def build_model(cfg: GPTConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg)


def random_batches(cfg: GPTConfig, n: int, batch: int, seq: int, seed: int = 1) -> list[Tensor]:
    """``n`` batches of ``seq + 1`` random tokens (inputs and next-token targets)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(cfg.vocab, (batch, seq + 1), generator=generator) for _ in range(n)]


def lm_loss(model: GPT, tokens: Tensor) -> Tensor:
    logits = model(tokens[:, :-1])
    loss: Tensor = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    return loss


# -- the optimizers ----------------------------------------------------------------------------------------
def mode_kwargs(spec: ModeSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """A mode's (TLR keyword arguments, inner AdamW keyword arguments)."""
    if isinstance(spec, dict):
        return dict(spec), {}
    tlr_kwargs, inner_kwargs = spec
    return dict(tlr_kwargs), dict(inner_kwargs)


def bare_name(inner: dict[str, Any]) -> str:
    """The name of the bare AdamW row built with ``inner``: "AdamW", "AdamW fused", ..."""
    words = [key if value is True else f"{key}={value}" for key, value in sorted(inner.items())]
    return " ".join([BARE, *words])


def make_adamw(model: nn.Module, lr: float = LR, **inner: Any) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY, **inner)


def make_tlr(model: nn.Module, mode: ModeSpec, k: int, lr: float = LR) -> TLR:
    """``TLR(AdamW(**inner), update_every=k, **tlr)``; the window-length warning (a K shorter than AdamW's
    momentum horizon is lengthened by the default rule) is silenced: ``window_lengths()`` reports it."""
    tlr_kwargs, inner_kwargs = mode_kwargs(mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return TLR(make_adamw(model, lr, **inner_kwargs), update_every=k, **tlr_kwargs)


def check_modes(names: Sequence[str], k: int) -> tuple[dict[str, int], list[str]]:
    """The modes ``TLR`` (and AdamW) accept, each with the window it uses at ``update_every=k`` around
    AdamW (probed on a tiny model, one step taken), and a note for each mode rejected."""
    accepted: dict[str, int] = {}
    notes: list[str] = []
    for name in names:
        try:
            layer = nn.Linear(2, 2)
            probe = make_tlr(layer, MODES[name], k)
            layer(torch.ones(1, 2)).sum().backward()
            probe.step()  # an inner optimizer that cannot take the rate TLR hands it fails here
        except (TypeError, ValueError, RuntimeError) as error:
            notes.append(f"mode {name!r} skipped: TLR rejects {MODES[name]!r}: {error}")
            continue
        accepted[name] = max(probe.window_lengths())
    return accepted, notes


def observes_loss(opt: torch.optim.Optimizer) -> bool:
    return bool(getattr(opt, "observes_loss", False))


def meta_steps_taken(opt: torch.optim.Optimizer) -> int:
    """Windows closed so far, over all groups: TLR's per-group counters (host integers, so reading them
    syncs nothing, unlike ``opt.history`` with ``host_sync=False``); 0 for a bare optimizer."""
    metas = getattr(opt, "group_meta", None)
    if metas is not None:
        return sum(meta.meta_steps for meta in metas)
    return len(getattr(opt, "history", ()))  # a TLR from before the per-group record


def reset_factors(opt: torch.optim.Optimizer) -> None:
    """Set TLR's trained factors back to 1 (in place where a factor is a device tensor, as with
    ``host_sync=False``, so that the rate stays a tensor)."""
    if isinstance(opt, TLR) and not hasattr(opt, "group_meta"):  # a TLR from before the per-group record
        for group in opt.param_groups:
            group["tlr_factor"] = 1.0
        return
    for meta in getattr(opt, "group_meta", ()):
        if isinstance(meta.factor, Tensor):
            meta.factor.fill_(1.0)
        else:
            meta.factor = 1.0


def state_bytes(opt: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of the optimizer's state tensors per key (per-parameter state, plus any ``tlr_*`` tensors
    TLR keeps in the param groups)."""
    per_key: dict[str, int] = {}
    for param_state in opt.state.values():
        for key, value in param_state.items():
            if isinstance(value, Tensor):
                per_key[key] = per_key.get(key, 0) + value.numel() * value.element_size()
    for group in opt.param_groups:
        for key, value in group.items():
            if key.startswith(TLR_PREFIX) and isinstance(value, Tensor):
                name = f"{key} (param group)"
                per_key[name] = per_key.get(name, 0) + value.numel() * value.element_size()
    return dict(sorted(per_key.items()))


def split_state(per_key: dict[str, int]) -> tuple[int, int]:
    """(the inner optimizer's bytes, TLR's ``tlr_*`` bytes)."""
    tlr = sum(v for k, v in per_key.items() if k.startswith(TLR_PREFIX))
    return sum(per_key.values()) - tlr, tlr


# -- peak RSS in a fresh process ---------------------------------------------------------------------------
def _maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB, macOS bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class RssProbe:
    """One peak-RSS measurement: the model, the optimizer (bare AdamW with the keyword arguments ``inner``
    when ``mode`` is None, else TLR in that mode) and how many steps it takes on one batch."""

    cfg: GPTConfig
    mode: str | None
    meta_k: int
    steps: int
    batch: int
    seq: int
    inner: dict[str, Any] = field(default_factory=dict)
    lr: float = LR

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RssProbe:
        spec = json.loads(text)
        return cls(**{**spec, "cfg": GPTConfig(**spec["cfg"])})


def rss_growth(probe: RssProbe) -> dict[str, Any]:
    """Build the model, run one forward + backward (grads and the activations' peak in place), read the
    peak RSS; build the probe's optimizer, take its steps with those grads (a constant loss observed), read
    it again. Meant for a fresh process (the peak never falls), where what grows is the optimizer's state
    and its step's and meta-step's temporaries."""
    cfg, mode, meta_k, lr = probe.cfg, probe.mode, probe.meta_k, probe.lr
    model = build_model(cfg)
    tokens = random_batches(cfg, 1, probe.batch, probe.seq)[0]
    loss = lm_loss(model, tokens)
    torch.autograd.backward(loss)
    loss = loss.detach()
    gc.collect()
    before, rss_before = _maxrss_bytes(), _rss_bytes()
    opt: torch.optim.Optimizer = (
        make_adamw(model, lr, **probe.inner) if mode is None else make_tlr(model, MODES[mode], meta_k, lr)
    )
    for _ in range(probe.steps):
        if observes_loss(opt):
            opt.observe_loss(loss)  # type: ignore[attr-defined]
        opt.step()
    after, rss_after = _maxrss_bytes(), _rss_bytes()
    inner_bytes, tlr_bytes = split_state(state_bytes(opt))
    return {
        "mode": mode,
        "maxrss_before": before,
        "maxrss_after": after,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "state_inner": inner_bytes,
        "state_tlr": tlr_bytes,
        "meta_steps": meta_steps_taken(opt),
        "steps": probe.steps,
    }


def rss_in_subprocess(probe: RssProbe, threads: int) -> dict[str, Any]:
    """:func:`rss_growth` in a fresh Python process running this file."""
    command = [sys.executable, os.path.abspath(__file__), "--rss-child", probe.to_json()]
    command += ["--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- timing ------------------------------------------------------------------------------------------------
StepFn = Callable[[int], bool]  # takes the step's index, returns whether a TLR window closed in it


def interleave(step_fns: dict[str, StepFn], n: int) -> dict[str, list[tuple[float, bool]]]:
    """Run ``n`` steps of every variant, one step of each in turn, the order rotating every step; return
    each step's wall time and whether a window closed in it."""
    names = list(step_fns)
    out: dict[str, list[tuple[float, bool]]] = {name: [] for name in names}
    for i in range(n):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            closed = step_fns[name](i)
            out[name].append((time.perf_counter() - start, closed))
    return out


def window_closed(opt: torch.optim.Optimizer, before: int) -> bool:
    return meta_steps_taken(opt) > before


def training_step_fn(model: GPT, opt: torch.optim.Optimizer, batches: list[Tensor]) -> StepFn:
    def step(i: int) -> bool:
        before = meta_steps_taken(opt)
        opt.zero_grad(set_to_none=True)
        loss = lm_loss(model, batches[i])
        torch.autograd.backward(loss)
        if observes_loss(opt):
            opt.observe_loss(loss)  # type: ignore[attr-defined]
        opt.step()
        return window_closed(opt, before)

    return step


def optimizer_step_fn(opt: torch.optim.Optimizer, loss: Tensor) -> StepFn:
    def step(i: int) -> bool:
        before = meta_steps_taken(opt)
        if observes_loss(opt):
            opt.observe_loss(loss)  # type: ignore[attr-defined]
        opt.step()
        closed = window_closed(opt, before)
        if closed:
            # Constant grads make consecutive windows alike, and the rule may keep raising the rate;
            # keep the weights in a normal range (no overflow, no denormals) from window to window.
            reset_factors(opt)
        return closed

    return step


@dataclass
class Timing:
    """One variant's step times, in seconds: steps without a window closing, and those with one."""

    plain: list[float] = field(default_factory=list)
    closing: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # plain step / the bare step of the same index

    @property
    def median(self) -> float:
        return statistics.median(self.plain) if self.plain else math.nan

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else math.nan

    def meta_costs(self) -> list[float]:
        """Each closing step minus the median step without a meta-step."""
        return [t - self.median for t in self.closing]


def split_timings(raw: dict[str, list[tuple[float, bool]]], against: dict[str, str]) -> dict[str, Timing]:
    """Each variant's steps split into those without and with a window closing; the ratios are to the
    steps of the same index of the variant ``against[name]`` (a bare row: itself)."""
    out: dict[str, Timing] = {}
    for name, steps in raw.items():
        timing = Timing()
        for (seconds, closed), (bare_seconds, _) in zip(steps, raw[against[name]]):
            if closed:
                timing.closing.append(seconds)
            else:
                timing.plain.append(seconds)
                timing.ratios.append(seconds / bare_seconds)
        out[name] = timing
    return out


# -- the benchmark -----------------------------------------------------------------------------------------


@dataclass
class Row:
    """The figures of one variant (bare AdamW, or TLR in one mode)."""

    name: str
    numel: int
    state_inner: int
    state_tlr: int
    train: Timing
    opt: Timing
    window: int | None = None  # TLR's window in the optimizer-step run
    statuses: list[str] = field(default_factory=list)
    rss: dict[str, Any] | None = None
    inner: dict[str, Any] = field(default_factory=dict)  # the (inner) AdamW's own keyword arguments
    against: str | None = None  # a TLR row: the name of the bare row it is compared with; None: bare


@dataclass
class Results:
    cfg: GPTConfig
    numel: int
    k: int
    rows: list[Row]
    notes: list[str]
    train_window: int | None = None


def run_benchmark(
    cfg: GPTConfig,
    *,
    modes: Sequence[str],
    steps: int,
    k: int,
    batch: int,
    seq: int,
    meta_k: int,
    meta_windows: int,
    rss: bool,
    threads: int = 1,
    log: Callable[[str], None] = print,
) -> Results:
    if seq > cfg.n_ctx:
        raise ValueError(f"seq {seq} exceeds the model's {cfg.n_ctx} positions")
    accepted, notes = check_modes(modes, meta_k)
    for note in notes:
        log(note)
    base = build_model(cfg)
    numel = sum(p.numel() for p in base.parameters())
    # The rows: plain AdamW first, then its TLR modes; then each other inner setting's bare AdamW and
    # its modes. Keyed by the bare row's name, or the mode's.
    by_inner: dict[str, list[str]] = {BARE: []}
    inners: dict[str, dict[str, Any]] = {BARE: {}}
    for name in accepted:
        inner = mode_kwargs(MODES[name])[1]
        inners.setdefault(bare_name(inner), inner)
        by_inner.setdefault(bare_name(inner), []).append(name)
    rows: dict[str, Row] = {}
    against: dict[str, str] = {}
    for bare, names in by_inner.items():
        rows[bare] = Row(bare, numel, 0, 0, Timing(), Timing(), inner=inners[bare])
        against[bare] = bare
        for name in names:
            rows[name] = Row(
                f"TLR {name}", numel, 0, 0, Timing(), Timing(), window=accepted[name], against=bare
            )
            rows[name].inner = inners[bare]
            against[name] = bare
    results = Results(cfg, numel, k, list(rows.values()), notes)

    # 1. Peak RSS, one fresh process per variant, before this process holds any large model copies.
    if rss:
        rss_steps = 2 * max(accepted.values(), default=1)
        for name, row in rows.items():
            log(f"peak RSS: {row.name} in a fresh process ({rss_steps} optimizer steps) ...")
            probe = RssProbe(
                cfg, None if row.against is None else name, meta_k, rss_steps, batch, seq, row.inner
            )
            row.rss = rss_in_subprocess(probe, threads)

    models = {name: copy.deepcopy(base) for name in rows}
    del base

    # 2a. Whole training steps at update_every=k (one warm-up step each, untimed).
    log(f"training steps: {steps} timed per variant, interleaved, K = {k} ...")
    batches = random_batches(cfg, steps + 1, batch, seq)
    opts = make_optimizers(models, rows, k)
    train_fns = {name: training_step_fn(models[name], opts[name], batches[1:]) for name in rows}
    for name in rows:
        training_step_fn(models[name], opts[name], batches)(0)
    for name, opt in opts.items():
        rows[name].state_inner, rows[name].state_tlr = split_state(state_bytes(opt))
        if isinstance(opt, TLR):
            results.train_window = max(opt.window_lengths())
    for name, timing in split_timings(interleave(train_fns, steps), against).items():
        rows[name].train = timing
    del opts, train_fns
    gc.collect()

    # 2b, 2c. optimizer.step() alone at update_every=meta_k, grads preset (one forward + backward each).
    opts = make_optimizers(models, rows, meta_k)
    losses: dict[str, Tensor] = {}
    for name, model in models.items():
        model.zero_grad(set_to_none=True)
        loss = lm_loss(model, batches[0])
        torch.autograd.backward(loss)
        losses[name] = loss.detach()
    window = max(accepted.values(), default=meta_k)
    n_opt = meta_windows * window
    log(f"optimizer steps: {n_opt} timed per variant, interleaved, K = {meta_k} (window {window}) ...")
    opt_fns = {name: optimizer_step_fn(opts[name], losses[name]) for name in rows}
    for name in rows:
        opt_fns[name](-1)  # the warm-up step: AdamW's state, TLR's buffers; it counts towards TLR's window
    for name, timing in split_timings(interleave(opt_fns, n_opt), against).items():
        rows[name].opt = timing
    for name, opt in opts.items():
        rows[name].statuses = [str(getattr(r.status, "value", r.status)) for r in getattr(opt, "history", [])]
    return results


def make_optimizers(models: dict[str, GPT], rows: dict[str, Row], k: int) -> dict[str, torch.optim.Optimizer]:
    """Each row's optimizer on its model: a bare AdamW with the row's inner keyword arguments, or TLR in
    the row's mode at ``update_every=k``."""
    opts: dict[str, torch.optim.Optimizer] = {}
    for name, row in rows.items():
        if row.against is None:
            opts[name] = make_adamw(models[name], **row.inner)
        else:
            opts[name] = make_tlr(models[name], MODES[name], k)
    return opts


# -- reporting ---------------------------------------------------------------------------------------------
def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def baseline(results: Results, row: Row) -> Row:
    """The bare row ``row`` is compared with (itself for a bare row)."""
    name = row.name if row.against is None else row.against
    return next(r for r in results.rows if r.name == name)


def derived(results: Results, row: Row) -> dict[str, float]:
    """The meta-step's cost and the amortised figures of a TLR row (NaN where they do not apply)."""
    bare = baseline(results, row)
    meta = _median(row.opt.meta_costs())
    bare_train, bare_opt = bare.train.median, bare.opt.median
    return {
        "meta_s": meta,
        "meta_in_bare_steps": meta / bare_opt,
        "meta_share_of_window": meta / (results.k * bare_train),
        "train_amortised": row.train.ratio + meta / (results.k * bare_train),
        "opt_amortised": row.opt.ratio + meta / (results.k * bare_opt),
    }


def markdown_table(results: Results) -> str:
    k = results.k
    header = (
        "| variant | against | inner state B/param | TLR state B/param | peak RSS growth MiB (B/param) "
        "| RSS growth − bare's, B/param | train step ms | × bare | opt step ms | × bare | meta-step ms "
        "| in bare opt steps "
        f"| % of a K={k} window | amortised train step × bare, K={k} | amortised opt step × bare, K={k} |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for row in results.rows:
        growth = None
        if row.rss is not None:
            growth = row.rss["maxrss_after"] - row.rss["maxrss_before"]
        rss_cell = "—" if growth is None else f"{growth / 2**20:.0f} ({growth / row.numel:.2f})"
        is_bare = row.against is None
        bare_rss = baseline(results, row).rss
        over_bare = "—"
        if growth is not None and bare_rss is not None and not is_bare:
            bare_growth = bare_rss["maxrss_after"] - bare_rss["maxrss_before"]
            over_bare = f"{(growth - bare_growth) / row.numel:.2f}"
        d = {} if is_bare else derived(results, row)
        cells = [
            row.name,
            "—" if is_bare else str(row.against),
            f"{row.state_inner / row.numel:.2f}",
            "—" if is_bare else f"{row.state_tlr / row.numel:.2f}",
            rss_cell,
            over_bare,
            _fmt(row.train.median * 1e3, ".0f"),
            "1" if is_bare else _fmt(row.train.ratio, ".4f"),
            _fmt(row.opt.median * 1e3, ".0f"),
            "1" if is_bare else _fmt(row.opt.ratio, ".4f"),
            "—" if is_bare else _fmt(d["meta_s"] * 1e3, ".0f"),
            "—" if is_bare else _fmt(d["meta_in_bare_steps"], ".2f"),
            "—" if is_bare else _fmt(d["meta_share_of_window"] * 100, ".3f") + " %",
            "—" if is_bare else _fmt(d["train_amortised"], ".4f"),
            "—" if is_bare else _fmt(d["opt_amortised"], ".4f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _spread(xs: Sequence[float]) -> str:
    return f"min {min(xs, default=math.nan) * 1e3:.0f}, max {max(xs, default=math.nan) * 1e3:.0f}"


def _ratio_spread(ratios: Sequence[float]) -> str:
    if len(ratios) < 2:
        return ""
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"; per-step ratio to bare: median {statistics.median(ratios):.3f}, quartiles {q1:.3f}–{q3:.3f}"


def details(results: Results) -> str:
    """The figures behind the table: per-key state bytes, the RSS readings, every meta-step's cost."""
    lines = []
    for row in results.rows:
        lines.append(
            f"{row.name}: state {row.state_inner:,} B inner + {row.state_tlr:,} B tlr_* "
            f"= {(row.state_inner + row.state_tlr) / 2**20:.1f} MiB"
        )
        if row.rss is not None:
            r = row.rss
            rss_now = (
                ""
                if r["rss_before"] is None
                else f"; current RSS {r['rss_before'] / 2**20:.0f} -> {r['rss_after'] / 2**20:.0f} MiB"
            )
            lines.append(
                f"  fresh process: peak RSS {r['maxrss_before'] / 2**20:.0f} MiB after model + fwd/bwd -> "
                f"{r['maxrss_after'] / 2**20:.0f} MiB after {r['steps']} optimizer steps "
                f"({r['meta_steps']} meta-steps){rss_now}; "
                f"state there {r['state_inner'] + r['state_tlr']:,} B"
            )
        t, o = row.train, row.opt
        lines.append(
            f"  training steps: {len(t.plain)} without a meta-step, median {t.median * 1e3:.0f} ms "
            f"({_spread(t.plain)}){'' if row.against is None else _ratio_spread(t.ratios)}"
            + (f"; with one: {', '.join(f'{s * 1e3:.0f}' for s in t.closing)} ms" if t.closing else "")
        )
        lines.append(
            f"  optimizer steps: {len(o.plain)} without a meta-step, median {o.median * 1e3:.0f} ms "
            f"({_spread(o.plain)}){'' if row.against is None else _ratio_spread(o.ratios)}"
            + (
                f"; with one: {', '.join(f'{s * 1e3:.0f}' for s in o.closing)} ms, meta-step costs "
                f"{', '.join(f'{s * 1e3:.0f}' for s in o.meta_costs())} ms (window {row.window}; "
                f"statuses {', '.join(row.statuses)})"
                if o.closing
                else ""
            )
        )
    return "\n".join(lines)


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            fields = f.read().split()
        return f"{' '.join(fields[:3])} ({fields[3]} running/total tasks; {os.cpu_count()} CPUs)"
    except OSError:
        try:
            return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"
        except OSError:
            return "n/a"


def busy_processes(interval: float = 1.0, threshold: float = 0.2) -> str:
    """The other processes that used more than ``threshold`` of a CPU over ``interval`` seconds (Linux's
    /proc), with their command lines: what else was running."""

    def cpu_ticks() -> dict[int, int]:
        ticks = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        stat = f.read()
                    fields = stat[stat.rindex(")") + 2 :].split()
                    ticks[int(entry)] = int(fields[11]) + int(fields[12])  # utime + stime
                except (OSError, ValueError, IndexError):
                    continue
        return ticks

    try:
        before = cpu_ticks()
        time.sleep(interval)
        after = cpu_ticks()
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return "n/a"
    busy = []
    for pid, ticks in after.items():
        share = (ticks - before.get(pid, ticks)) / hz / interval
        if pid != os.getpid() and share >= threshold:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    words = f.read().decode(errors="replace").split("\0")
                command = without_folders(" ".join(w for w in words if w))[:100].rstrip()
            except OSError:
                command = "?"
            busy.append((share, f"{share:.0%} {command}"))
    return "; ".join(text for _, text in sorted(busy, reverse=True)) or "none"


def without_folders(text: str) -> str:
    """``text`` with each absolute path cut to its last component (``/x/y/python`` -> ``python``): what
    ran, not where it lay on this machine."""
    words = text.split()
    return " ".join(word.rstrip("/").rsplit("/", 1)[-1] if word.startswith("/") else word for word in words)


def library_origin() -> str:
    """Where the ``ntlr`` imported here comes from, without naming a folder: its path relative to the
    working directory and the commit checked out there (with "+ changes" when ``src/ntlr`` has
    uncommitted ones), or "from outside this directory"."""
    folder = os.path.dirname(ntlr.__file__)
    relative = os.path.relpath(folder)
    if relative.startswith(".."):
        return "imported from outside this directory"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", folder], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return relative
    return f"{relative}, commit {commit}{' + changes' if dirty else ''}"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small model (4 layers, d_model 256)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default 20; quick 6)")
    parser.add_argument("--k", type=int, default=100, help="TLR's update_every for the training steps")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--meta-k", type=int, default=10, help="update_every in the optimizer-step run")
    parser.add_argument("--meta-windows", type=int, default=None, help="windows timed there (4; quick 2)")
    parser.add_argument("--untied", action="store_true", help="an output head of its own")
    parser.add_argument("--no-rss", action="store_true", help="skip the fresh-process peak RSS")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; MODES has {list(MODES)}")
    args.modes = modes
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rss_child is not None:
        result = rss_growth(RssProbe.from_json(args.rss_child))
        print(json.dumps(result))
        return

    cfg = QUICK if args.quick else GPT2_SMALL
    if args.untied:
        cfg = GPTConfig(**{**asdict(cfg), "tied": False})
    steps = args.steps if args.steps is not None else (6 if args.quick else 20)
    meta_windows = args.meta_windows if args.meta_windows is not None else (2 if args.quick else 4)
    command = "python " + shlex.join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    started = time.perf_counter()
    print(
        f"ntlr {ntlr.__version__} ({library_origin()}), torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )
    print(f"{cpu_name()}, {args.threads} torch thread(s)")
    print(
        f"model: {cfg.n_layer} layers, d_model {cfg.d_model}, {cfg.n_head} heads, vocab {cfg.vocab}, "
        f"{cfg.n_ctx} positions, output head {'tied to the token embedding' if cfg.tied else 'untied'}: "
        f"{param_count(cfg):,} parameters (float32); batch {args.batch} × {args.seq} random tokens; "
        f"AdamW lr {LR}, weight decay {WEIGHT_DECAY}"
    )
    print(f"load average at start: {load_average()}")
    print(f"other busy processes at start: {busy_processes()}")
    results = run_benchmark(
        cfg,
        modes=args.modes,
        steps=steps,
        k=args.k,
        batch=args.batch,
        seq=args.seq,
        meta_k=args.meta_k,
        meta_windows=meta_windows,
        rss=not args.no_rss,
        threads=args.threads,
    )
    assert results.numel == param_count(cfg), (results.numel, param_count(cfg))
    print(f"load average at end: {load_average()}")
    print(f"other busy processes at end: {busy_processes()}")
    print(f"took {time.perf_counter() - started:.0f} s\n")
    print(details(results))
    print()
    print(markdown_table(results))
    print(
        f"\nTraining steps at update_every={args.k} (TLR's window {results.train_window}); optimizer steps "
        f"and meta-steps at update_every={args.meta_k}; a meta-step's cost = a step where a window closed "
        "minus the median TLR step without one. Each TLR row is compared with the bare row named under "
        "'against'. Targets: meta-step ≤ 2 bare optimizer steps, ≤ 0.5 % of a K = 100 window of training "
        "steps; the low-memory mode ≤ 2 B of extra memory per float32 parameter."
    )
    for note in results.notes:
        print(note)
    print(f"\ncommand: {command}")


if __name__ == "__main__":
    main()
