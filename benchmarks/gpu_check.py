"""The checks that need a GPU, in one prepared run: what the CPU test suite cannot see.

    python benchmarks/gpu_check.py [--device cuda] [--json FILE] [--sections paths,syncs,...]

Sections (each runs on its own: one that fails prints its error and the others still run):

* ``paths``: the meta-step's ``foreach`` path (TLR's choice for CUDA parameters) against the per-tensor
  loop path, both on the device, and both against the same run on the CPU: the rate trajectory, the
  meta-steps' statuses and the final weights, for the default rule (loss fed) and the paper's, around
  SGD with momentum and AdamW (TF32 off, so that the GPU's float32 is the CPU's up to summation order).
* ``syncs``: host syncs counted by CUDA itself (``torch.cuda.set_sync_debug_mode("warn")``) in
  ``observe_loss`` + ``step()``, split into steps where a window closed and the others: the synced path
  must sync at most once per meta-step and never between them; ``host_sync=False`` never.
* ``no_sync``: benchmarks/no_sync_check.py's check (no sync in any step, the synced path's trajectory)
  and its timing.
* ``graph``: one window of K whole training steps (forward, backward, ``TLR.step``; the meta-step is the
  window's last step) captured as one CUDA graph around a fused capturable AdamW with
  ``TLR(rule="paper", host_sync=False)``, replayed window after window beside the same run taken eagerly:
  the trained factor and the weights after each window, and the time per step of both.
* ``gpt``: a GPT-2-small-shaped model (benchmarks/large_model.py's, 124M parameters) on the device, bf16
  autocast, AdamW: the time of a whole training step bare and with TLR in each mode at K = 100, the
  meta-step's time (optimizer steps alone, a window closing every 10), and the peak device memory of
  each (a fresh model per variant).

Prints a markdown table per section and the exact command line; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ntlr
from ntlr import TLR

sys.path.insert(0, str(Path(__file__).resolve().parent))
import large_model
import no_sync_check

Result = dict[str, Any]
QUICK = False  # --quick: a small model in the gpt section (a smoke test of the script on the CPU)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(256, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 10))


def _data(n: int, batch: int = 64, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Inputs and the labels of a fixed random linear teacher: a task the network can learn (on random
    labels the paper's rule climbs without end and rounding differences grow into other trajectories)."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(256, 10, generator=g)
    xs = [torch.randn(batch, 256, generator=g) for _ in range(n)]
    return [(x, (x @ teacher).argmax(1)) for x in xs]


INNERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "SGD m0.9": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=1e-3),
}
RULES: dict[str, dict[str, Any]] = {"robust (loss fed)": {"rule": "robust"}, "paper": {"rule": "paper"}}


def _train(
    device: torch.device, inner: str, rule: str, foreach: bool, steps: int, k: int
) -> tuple[list[float], list[str], torch.Tensor]:
    model = _mlp().to(device)
    opt = TLR(INNERS[inner](model.parameters()), update_every=k, foreach=foreach, **RULES[rule])
    for x, y in _data(steps):
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if opt.observes_loss:
            opt.observe_loss(loss)
        loss.backward()
        opt.step()
    rates = [record.lr for record in opt.history]
    statuses = [str(record.status) for record in opt.history]
    return rates, statuses, torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])


def _rel(a: list[float] | torch.Tensor, b: list[float] | torch.Tensor) -> float:
    ta, tb = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if ta.shape != tb.shape:
        return float("nan")
    return float(((ta - tb).abs() / tb.abs().clamp_min(1e-30)).max()) if ta.numel() else 0.0


def section_paths(device: torch.device, steps: int = 300, k: int = 10) -> list[Result]:
    rows = []
    for inner in INNERS:
        for rule in RULES:
            runs = {
                "device foreach": _train(device, inner, rule, True, steps, k),
                "device loop": _train(device, inner, rule, False, steps, k),
                "cpu loop": _train(torch.device("cpu"), inner, rule, False, steps, k),
            }
            base_rates, base_status, base_w = runs["device loop"]
            for name in ("device foreach", "cpu loop"):
                rates, status, w = runs[name]
                rows.append(
                    {
                        "inner": inner,
                        "rule": rule,
                        "against device loop": name,
                        "meta-steps": len(rates),
                        "same statuses": status == base_status,
                        "rate max rel diff": _rel(rates, base_rates),
                        "first 10": _rel(rates[:10], base_rates[:10]),
                        "weights rel diff": float((w - base_w).norm() / base_w.norm()),
                        "updated": sum(s == "updated" for s in base_status),
                    }
                )
    return rows


def section_syncs(device: torch.device, steps: int = 120, k: int = 10) -> list[Result]:
    if device.type != "cuda":
        raise RuntimeError("the sync count is CUDA's own (set_sync_debug_mode): run with --device cuda")
    variants: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
        "bare SGD m0.9": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        "TLR robust (loss fed)": lambda params: TLR(
            torch.optim.SGD(params, lr=0.05, momentum=0.9), update_every=k
        ),
        "TLR robust, AdamW (loss fed)": lambda params: TLR(
            torch.optim.AdamW(params, lr=1e-3), update_every=k
        ),
        "TLR paper": lambda params: TLR(
            torch.optim.SGD(params, lr=0.05, momentum=0.9), update_every=k, rule="paper"
        ),
        "TLR paper, host_sync=False, fused SGD": lambda params: TLR(
            torch.optim.SGD(params, lr=0.05, momentum=0.9, fused=True),
            update_every=k,
            rule="paper",
            host_sync=False,
        ),
    }
    rows = []
    for name, make in variants.items():
        model = _mlp().to(device)
        opt = make(model.parameters())
        plain, meta = [], []
        for i, (x, y) in enumerate(_data(steps)):
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            before = sum(m.meta_steps for m in opt.group_meta) if isinstance(opt, TLR) else 0
            _sync(device)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    if isinstance(opt, TLR) and opt.observes_loss:
                        opt.observe_loss(loss)
                    opt.step()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            count = sum("synchroniz" in str(w.message).lower() for w in seen)
            if i == 0:
                continue  # the inner optimizer's state is created on its first step
            after = sum(m.meta_steps for m in opt.group_meta) if isinstance(opt, TLR) else 0
            (meta if after > before else plain).append(count)
        rows.append(
            {
                "variant": name,
                "steps": len(plain) + len(meta),
                "meta-steps": len(meta),
                "syncs, other steps (max)": max(plain, default=0),
                "syncs per meta-step (max)": max(meta, default=0),
                "syncs in all": sum(plain) + sum(meta),
            }
        )
    return rows


def section_no_sync(device: torch.device) -> list[Result]:
    rows = []
    for inner in no_sync_check.INNERS:
        result = no_sync_check.check(inner, device, 400, 20)
        t = no_sync_check.timing(inner, device, 20, 5)
        rows.append({"inner": inner, **result, **{f"step µs {mode}": t[mode] * 1e6 for mode in t}})
    return rows


GRAPH_INNERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "AdamW fused capturable": lambda params: torch.optim.AdamW(params, lr=1e-3, fused=True, capturable=True),
    "AdamW foreach capturable": lambda params: torch.optim.AdamW(
        params, lr=1e-3, foreach=True, capturable=True
    ),
    "SGD m0.9 fused": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, fused=True),
}


def _graph_setup(device: torch.device, inner: str, k: int) -> tuple[nn.Module, TLR]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 1024), nn.GELU(), nn.Linear(1024, 10)
    ).to(device)
    return model, TLR(GRAPH_INNERS[inner](model.parameters()), update_every=k, rule="paper", host_sync=False)


def section_graph(device: torch.device) -> list[Result]:
    if device.type != "cuda":
        raise RuntimeError("CUDA graphs need --device cuda")
    rows = []
    for inner in GRAPH_INNERS:
        try:
            rows.append({"inner": inner, **_graph_check(device, inner)})
        except Exception as error:  # one inner optimizer's failure is a result too
            traceback.print_exc()
            rows.append({"inner": inner, "error": f"{type(error).__name__}: {error}"[:300]})
    return rows


def _graph_check(device: torch.device, inner: str, k: int = 10, warm: int = 3, windows: int = 20) -> Result:
    batch = 64
    g = torch.Generator().manual_seed(1)
    total = (warm + windows) * k
    xs = torch.randn(total, batch, 256, generator=g).to(device)
    ys = torch.randint(0, 10, (total, batch), generator=g).to(device)

    def window(model: nn.Module, opt: TLR, x: torch.Tensor, y: torch.Tensor) -> None:
        for i in range(k):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()

    eager_model, eager_opt = _graph_setup(device, inner, k)
    graph_model, graph_opt = _graph_setup(device, inner, k)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):  # warm up on a side stream, as torch's graph capture asks
        for w in range(warm):
            window(graph_model, graph_opt, xs[w * k : (w + 1) * k], ys[w * k : (w + 1) * k])
    torch.cuda.current_stream(device).wait_stream(stream)
    for w in range(warm):
        window(eager_model, eager_opt, xs[w * k : (w + 1) * k], ys[w * k : (w + 1) * k])
    static_x, static_y = xs[:k].clone(), ys[:k].clone()
    graph = torch.cuda.CUDAGraph()
    graph_opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        window(graph_model, graph_opt, static_x, static_y)
    factor_diff, weight_diff = 0.0, 0.0
    factors = []
    for w in range(warm, warm + windows):
        x, y = xs[w * k : (w + 1) * k], ys[w * k : (w + 1) * k]
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        window(eager_model, eager_opt, x, y)
        fe, fg = float(eager_opt.group_meta[0].factor), float(graph_opt.group_meta[0].factor)
        factors.append(fe)
        factor_diff = max(factor_diff, abs(fg - fe) / abs(fe))
        we = torch.cat([p.detach().reshape(-1) for p in eager_model.parameters()])
        wg = torch.cat([p.detach().reshape(-1) for p in graph_model.parameters()])
        weight_diff = max(weight_diff, float((wg - we).norm() / we.norm()))
    # Time per step: the graph's replay against the eager window, interleaved.
    times: dict[str, list[float]] = {"eager": [], "graph": []}
    for _ in range(10):
        for name in times:
            _sync(device)
            start = time.perf_counter()
            if name == "graph":
                graph.replay()
            else:
                window(eager_model, eager_opt, static_x, static_y)
            _sync(device)
            times[name].append((time.perf_counter() - start) / k)
    return {
        "windows replayed": windows,
        "K": k,
        "factor max rel diff (graph vs eager)": factor_diff,
        "weights max rel diff": weight_diff,
        "factor (first, last window)": f"{factors[0]:.4g}, {factors[-1]:.4g}",
        "step µs eager": statistics.median(times["eager"]) * 1e6,
        "step µs graph": statistics.median(times["graph"]) * 1e6,
    }


GPT_VARIANTS: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {
    # name -> (TLR's keyword arguments, or None for the bare optimizer; the inner AdamW's)
    "AdamW": (None, {}),
    "TLR exact (default rule, loss fed)": ({}, {}),
    "TLR exact, fused=True": ({"fused": True}, {}),
    "TLR sketch=8": ({"sketch": 8}, {}),
    "AdamW fused": (None, {"fused": True}),
    "TLR no-sync (paper, fused)": ({"rule": "paper", "host_sync": False}, {"fused": True}),
}


def _gpt_opt(
    model: nn.Module, spec: tuple[dict[str, Any] | None, dict[str, Any]], k: int
) -> torch.optim.Optimizer:
    tlr, inner_kwargs = spec
    inner = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, **inner_kwargs)
    return inner if tlr is None else TLR(inner, update_every=k, **tlr)


def section_gpt(device: torch.device, batch: int = 8, seq: int = 1024, steps: int = 20) -> list[Result]:
    cfg = large_model.GPT2_SMALL
    if QUICK:
        cfg, batch, seq, steps = large_model.QUICK, 2, 64, 4
    tokens = [t.to(device) for t in large_model.random_batches(cfg, steps + 2, batch, seq)]
    rows = []
    for name, spec in GPT_VARIANTS.items():
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        model = large_model.build_model(cfg).to(device)
        opt = _gpt_opt(model, spec, 100)
        train: list[float] = []
        for i, t in enumerate(tokens):
            _sync(device)
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = large_model.lm_loss(model, t)
            if isinstance(opt, TLR) and opt.observes_loss:
                opt.observe_loss(loss)
            loss.backward()
            opt.step()
            _sync(device)
            if i >= 2:
                train.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        # The meta-step: optimizer steps alone (grads kept), a window closing every 10 steps.
        meta_costs: list[float] = []
        plain: list[float] = []
        if isinstance(opt, TLR):
            meta_opt = _gpt_opt(model, spec, 10)
            for i in range(42):
                before = sum(m.meta_steps for m in meta_opt.group_meta)
                if meta_opt.observes_loss:
                    meta_opt.observe_loss(loss.detach())
                _sync(device)
                start = time.perf_counter()
                meta_opt.step()
                _sync(device)
                elapsed = time.perf_counter() - start
                if i < 2:
                    continue
                closed = sum(m.meta_steps for m in meta_opt.group_meta) > before
                (meta_costs if closed else plain).append(elapsed)
            del meta_opt
        else:
            for _ in range(12):
                _sync(device)
                start = time.perf_counter()
                opt.step()
                _sync(device)
                plain.append(time.perf_counter() - start)
        rows.append(
            {
                "variant": name,
                "train step ms": statistics.median(train) * 1e3,
                "optimizer step ms": statistics.median(plain) * 1e3,
                "meta-step extra ms": (statistics.median(meta_costs) - statistics.median(plain)) * 1e3
                if meta_costs
                else None,
                "peak GiB": peak / 2**30,
                "params": sum(p.numel() for p in model.parameters()),
            }
        )
        del model, opt
    return rows


def section_profile(device: torch.device) -> list[Result]:
    """Where a meta-step's time goes on the GPT model: torch.profiler over one meta-step per mode (the
    table of its top operators is printed; the rows hold the totals)."""
    from torch.profiler import ProfilerActivity, profile

    cfg = large_model.QUICK if QUICK else large_model.GPT2_SMALL
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    rows = []
    model = large_model.build_model(cfg).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    for name in (
        "TLR exact (default rule, loss fed)",
        "TLR exact, fused=True",
        "TLR sketch=8",
        "TLR no-sync (paper, fused)",
    ):
        opt = _gpt_opt(model, GPT_VARIANTS[name], 10)
        assert isinstance(opt, TLR)
        loss = torch.zeros((), device=device)
        window = max(opt.window_lengths())
        for _ in range(3 * window - 1):  # past the first meta-steps, up to a window's last step
            if opt.observes_loss:
                opt.observe_loss(loss)
            opt.step()
        before = sum(meta.meta_steps for meta in opt.group_meta)
        _sync(device)
        with profile(activities=activities) as prof:
            if opt.observes_loss:
                opt.observe_loss(loss)
            start = time.perf_counter()
            opt.step()  # the window's last step: a meta-step
            _sync(device)
            elapsed = time.perf_counter() - start
        assert sum(meta.meta_steps for meta in opt.group_meta) > before, "no meta-step was profiled"
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        print(f"### {name}\n")
        print(prof.key_averages().table(sort_by=sort, row_limit=12, max_name_column_width=48))
        events = prof.key_averages()
        rows.append(
            {
                "mode": name,
                "step with a meta-step ms": elapsed * 1e3,
                # CUDA: kernel launches; on the CPU there are none to count, so the operator calls.
                "kernels launched (CPU: operator calls)": sum(
                    e.count for e in events if device.type != "cuda" or e.key == "cudaLaunchKernel"
                ),
            }
        )
        del opt
    return rows


SECTIONS: dict[str, Callable[[torch.device], list[Result]]] = {
    "paths": section_paths,
    "syncs": section_syncs,
    "no_sync": section_no_sync,
    "graph": section_graph,
    "gpt": section_gpt,
    "profile": section_profile,
}


def _table(rows: list[Result]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(dict.fromkeys(key for row in rows for key in row))

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(row.get(key)) for key in keys) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--json", default=None)
    parser.add_argument("--quick", action="store_true", help="a small model in the gpt section")
    args = parser.parse_args()
    global QUICK
    QUICK = args.quick
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"torch {torch.__version__}, ntlr {ntlr.__version__}, Python {platform.python_version()}, {name}")
    # File names only: a committed log names no folder of the machine that made it.
    shown = [Path(arg).name if arg == args.json else arg for arg in sys.argv[1:]]
    print("command: python " + shlex.join([Path(sys.argv[0]).name, *shown]))
    out: dict[str, Any] = {"torch": torch.__version__, "device": name}
    for section in args.sections.split(","):
        print(f"\n## {section}\n", flush=True)
        start = time.perf_counter()
        try:
            rows = SECTIONS[section](device)
        except Exception as error:  # one section's failure is reported; the others still run
            traceback.print_exc()
            out[section] = {"error": f"{type(error).__name__}: {error}"}
            continue
        out[section] = rows
        print(_table(rows))
        print(f"\n({time.perf_counter() - start:.1f} s)", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
