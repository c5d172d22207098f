"""Overhead of ``ntlr.TLR`` over its inner optimizer, measured side by side in one run.

Prints, for SGD (momentum 0.9) and Adam on an MLP of about 12.6M parameters (grads preset, so only
``optimizer.step()`` is timed: the strictest comparison, a training step also pays forward and backward):

* the mean step time of the bare inner optimizer and of ``TLR(inner)`` for K = 1, 10, 100, and their
  ratio. The two are interleaved step by step (bare, TLR, bare, TLR, ...; each on its own copy of the
  model; the order alternates), so a shared machine's load drifts hit both alike. Times are summed per
  block of whole windows (K steps, at least 10), so a block holds its meta-steps in the right proportion;
  the table shows the median over blocks of the mean step time and of the per-block ratio;
* the cost of one meta-step in units of inner SGD steps: in situ (TLR at K = 1 minus bare, per block)
  and isolated (the inner products, then ``advance_window_``, on the model's tensors as TLR's meta-step
  runs them: the foreach path where TLR takes it, ``u_new`` reused and ``b`` known from the previous
  window where the library does so; paired with a plain SGD step each time);
* the extra bytes per parameter, summed from the state tensors (not hard-coded).

``--compare-src DIR`` adds a second copy of the library, imported from ``DIR`` (a ``src`` folder holding
``ntlr``, e.g. an older commit's exported with ``git archive COMMIT | tar x``) under another module name:
its ``TLR`` joins every interleaving (bare, TLR, TLR [label], in a rotating order) and its meta-step the
isolated pairs, so that the two libraries are compared in one process under the same load. Its rows are
marked ``[--compare-label]``.

    python benchmarks/overhead.py [--quick] [--threads 1] [--device cpu] [--blocks 5] [--ks 1,10,100]
        [--compare-src DIR --compare-label NAME]

With ``--ks`` not holding 1, the in-situ meta-step (and the amortized lines built on it) are left out.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

import ntlr
from compare_library import load_library

WIDTHS = (1024, 2048, 2048, 2048, 1024)  # 12.6M parameters
QUICK_WIDTHS = (256, 512, 512, 256)  # 0.5M parameters
KS = (1, 10, 100)
INNERS: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
    "SGD(m=0.9)": lambda params: torch.optim.SGD(params, lr=1e-4, momentum=0.9),
    "Adam": lambda params: torch.optim.Adam(params, lr=1e-5),
}


def make_params(widths: tuple[int, ...], device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """The MLP's parameters, each with a fixed random grad (the step never clears grads)."""
    torch.manual_seed(seed)
    layers = [nn.Linear(i, o) for i, o in itertools.pairwise(widths)]
    params: list[torch.Tensor] = [
        nn.Parameter(p.detach().to(device)) for layer in layers for p in layer.parameters()
    ]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    return params


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def reset_rates(opt: Any) -> None:
    # Constant grads make consecutive windows near-identical, so the factor would climb ×100 per
    # meta-step; keep the weights in a normal range (no overflow, no denormals) between blocks. The
    # factor lives in ``opt.group_meta`` (the param groups only show it, read-only); a TLR from before
    # that record (the commit before 93a21d2) keeps it in the param groups.
    metas = getattr(opt, "group_meta", None)
    if metas is None:
        for group in opt.param_groups:
            group["tlr_factor"] = 1.0
        return
    for meta in metas:
        meta.factor = 1.0


def interleaved(
    bare: torch.optim.Optimizer, tlrs: list[Any], steps: int, blocks: int, device: torch.device
) -> tuple[float, list[float], list[float]]:
    """Median over blocks of the mean step time of ``bare``, of each of ``tlrs``, and of each one's ratio
    to ``bare``. The optimizers step one after another, the order rotating from step to step."""
    opts = [bare, *tlrs]
    means: list[list[float]] = [[] for _ in opts]
    ratios: list[list[float]] = [[] for _ in tlrs]
    for block in range(blocks):
        totals = [0.0] * len(opts)
        for step in range(steps):
            shift = (block + step) % len(opts)
            for i in [*range(shift, len(opts)), *range(shift)]:
                totals[i] += timed(opts[i].step, device)
        for tlr in tlrs:
            reset_rates(tlr)
        for i, total in enumerate(totals):
            means[i].append(total / steps)
        for i in range(len(tlrs)):
            ratios[i].append(totals[i + 1] / totals[0])
    return (
        statistics.median(means[0]),
        [statistics.median(m) for m in means[1:]],
        [statistics.median(r) for r in ratios],
    )


def meta_step_fn(library: ModuleType, params: list[torch.Tensor], device: torch.device) -> Callable[[], None]:
    """One meta-step's tensor work on ``params`` as ``library``'s TLR does it: the inner products (brought
    to the host), then the window advanced; on buffers of its own."""
    snaps = [p.detach().clone() for p in params]
    prev = [torch.zeros_like(p) for p in params]
    numel = sum(p.numel() for p in params)
    # Since 93a21d2: the foreach path off the CPU, and on it for groups up to 2^20 elements; b is the last
    # kept window's c (old_norm=False), and the foreach path's u_new is copied instead of formed again.
    # Before it: the loop path on the CPU, and two passes of their own.
    products_and_directions = getattr(library.functional, "window_products_and_directions", None)
    limit = getattr(library.tlr, "_FOREACH_CPU_NUMEL", None)
    foreach = device.type != "cpu" or (limit is not None and numel <= limit)
    # 66efbd1 summed <s, s> of the snapshot for the default rule's reach test (item 11) at every
    # meta-step; since then only until a window is kept (uses_weight_norm(kept)): not in this steady state.
    wanted = getattr(library.RobustRule(), "uses_weight_norm", False)
    weights = {"weights": True} if (wanted(True) if callable(wanted) else wanted) else {}
    # Since the buffers keep the raw displacement (tlr_prev_scale): no division by the window's rate, the
    # sums scaled instead.
    raw = "keep_scale" in inspect.signature(library.advance_window_).parameters
    scaled = {"keep_scale": True} if raw else {}
    old_scale = {"old_scale": 1e-4} if raw else {}

    @torch.no_grad()  # as TLR's meta-step (the parameters require grad)
    def meta_step() -> None:
        if products_and_directions is None:
            library.window_inner_products(params, snaps, prev, 1e-4, foreach=foreach).tolist()
            library.advance_window_(params, snaps, prev, 1e-4, foreach=foreach)
            return
        products, directions = products_and_directions(
            params, snaps, prev, 1e-4, foreach=foreach, old_norm=False, **weights, **old_scale
        )
        products.tolist()
        library.advance_window_(params, snaps, prev, 1e-4, foreach=foreach, directions=directions, **scaled)

    return meta_step


def state_bytes_per_param(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> dict[str, float]:
    numel = sum(p.numel() for p in params)
    per_key: dict[str, int] = {}
    for param_state in opt.state.values():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                per_key[key] = per_key.get(key, 0) + value.numel() * value.element_size()
    return {key: total / numel for key, total in sorted(per_key.items())}


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small model, few blocks (a smoke test)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--blocks", type=int, default=None, help="blocks per row (default 5, quick 3)")
    parser.add_argument(
        "--ks", default=",".join(map(str, KS)), help="the window lengths K of the table (default 1,10,100)"
    )
    parser.add_argument("--compare-src", default=None, help="a src folder holding another copy of ntlr")
    parser.add_argument("--compare-label", default="compared", help="its rows' label (e.g. a commit)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    widths = QUICK_WIDTHS if args.quick else WIDTHS
    blocks = args.blocks or (3 if args.quick else 5)
    blocks_k100 = max(3, blocks // 2)
    ks = tuple(int(k) for k in args.ks.split(","))
    libraries: dict[str, ModuleType] = {"": ntlr}
    if args.compare_src is not None:
        libraries[f" [{args.compare_label}]"] = load_library(args.compare_src)

    numel = sum(p.numel() for p in make_params(widths, torch.device("cpu")))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"ntlr {ntlr.__version__}, torch {torch.__version__}, python {platform.python_version()}")
    print(
        f"device {device} ({where}), {args.threads} torch thread(s); MLP {'-'.join(map(str, widths))}: "
        f"{numel / 1e6:.1f}M float32 params; optimizer.step() only (grads preset)"
    )
    print(f"load average at start: {_load()}")
    started = time.perf_counter()
    if len(libraries) > 1:
        print(f"rows marked [{args.compare_label}]: TLR from the library given by --compare-src")
    print(
        f"bare and TLR steps interleaved one by one; medians over {blocks} blocks of max(K, 10) steps "
        f"({blocks_k100} for K=100)\n"
    )

    width = max(12, *(len(name) + len(label) for name in INNERS for label in libraries))
    header = f"{'inner':<{width}}{'K':>5}{'bare ms/step':>15}{'TLR ms/step':>14}{'ratio':>9}{'overhead':>10}"
    print(header)
    print("-" * len(header))
    bare_step: dict[str, float] = {}
    meta_in_situ: dict[tuple[str, str], float] = {}
    extra_bytes: dict[tuple[str, str], dict[str, float]] = {}
    inner_bytes: dict[str, dict[str, float]] = {}
    for name, make in INNERS.items():
        params_bare = make_params(widths, device)
        bare = make(params_bare)
        bare.step()  # initialise the inner state
        bare_times = []
        for k in ks:
            tlrs, tlr_params = [], []
            for library in libraries.values():
                params_tlr = make_params(widths, device)
                # The paper's rule: windows of exactly K steps (the robust rule lengthens them to the
                # momentum's horizon) and the same window mechanics, which are what this measures.
                tlr = library.TLR(make(params_tlr), update_every=k, rule="paper")
                # Warm up (the inner's state, the first window) and align the blocks with the windows.
                tlr.step()
                while tlr.param_groups[0]["tlr_window_steps"]:
                    tlr.step()
                reset_rates(tlr)
                tlrs.append(tlr)
                tlr_params.append(params_tlr)
            n_blocks = blocks if k < 100 else blocks_k100
            t_bare, t_tlrs, ratios = interleaved(bare, tlrs, max(k, 10), n_blocks, device)
            bare_times.append(t_bare)
            for label, tlr, params_tlr, t_tlr, ratio in zip(
                libraries, tlrs, tlr_params, t_tlrs, ratios, strict=True
            ):
                if k == 1:
                    meta_in_situ[name, label] = t_tlr - t_bare
                print(
                    f"{name + label:<{width}}{k:>5}{t_bare * 1e3:>15.3f}{t_tlr * 1e3:>14.3f}{ratio:>9.4f}"
                    f"{(ratio - 1) * 100:>9.2f}%",
                    flush=True,
                )
                extra_bytes[name, label] = {
                    key: v
                    for key, v in state_bytes_per_param(tlr, params_tlr).items()
                    if key.startswith("tlr_")
                }
            inner_bytes[name] = state_bytes_per_param(bare, params_bare)
            del tlrs, tlr_params
        bare_step[name] = statistics.median(bare_times)
        del bare, params_bare

    # One meta-step, isolated: the elementwise and reduction work of a kept window on all tensors, each
    # library's in turn, each set paired with a plain SGD step (no momentum: the cheapest inner step).
    plain_params = make_params(widths, device)
    plain = torch.optim.SGD(plain_params, lr=1e-4)
    plain.step()
    meta_steps = {label: meta_step_fn(library, plain_params, device) for label, library in libraries.items()}
    for meta_step in meta_steps.values():
        meta_step()
    plain_times: list[float] = []
    meta_times: dict[str, list[float]] = {label: [] for label in libraries}
    meta_ratios: dict[str, list[float]] = {label: [] for label in libraries}
    for i in range(4 * blocks):
        t_plain_step = timed(plain.step, device)
        plain_times.append(t_plain_step)
        labels = list(meta_steps)
        for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
            t_meta_step = timed(meta_steps[label], device)
            meta_times[label].append(t_meta_step)
            meta_ratios[label].append(t_meta_step / t_plain_step)
    t_plain = statistics.median(plain_times)

    # For scale: one whole training step (forward + backward at batch 128, then the SGD(m=0.9) step).
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, o in itertools.pairwise(widths):
        layers += [nn.Linear(i, o), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).to(device)
    train_opt = INNERS["SGD(m=0.9)"](list(model.parameters()))
    x = torch.randn(128, widths[0], device=device)

    def train_step() -> None:
        train_opt.zero_grad()
        model(x).pow(2).mean().backward()
        train_opt.step()

    train_step()
    t_train = statistics.median(timed(train_step, device) for _ in range(max(3, blocks // 2)))

    t_sgd = bare_step["SGD(m=0.9)"]
    print("\nmeta-step cost (one meta-step over all the param tensors):")
    for label in libraries:
        t_meta = statistics.median(meta_times[label])
        if ("SGD(m=0.9)", label) in meta_in_situ:
            in_situ = meta_in_situ["SGD(m=0.9)", label]
            print(
                f"  in situ{label}   TLR(SGD(m=0.9), K=1) - bare    = {in_situ * 1e3:7.3f} ms = "
                f"{in_situ / t_sgd:5.2f} SGD(m=0.9) steps = {in_situ / t_plain:5.2f} plain SGD steps"
            )
        print(
            f"  isolated{label}  inner products + advance = {t_meta * 1e3:7.3f} ms = {t_meta / t_sgd:5.2f} "
            f"SGD(m=0.9) steps = {statistics.median(meta_ratios[label]):5.2f} plain SGD steps "
            "(median of pairs)"
        )
    print(
        f"  bare steps: SGD(m=0.9) {t_sgd * 1e3:.3f} ms, plain SGD {t_plain * 1e3:.3f} ms, "
        f"Adam {bare_step['Adam'] * 1e3:.3f} ms; a training step (fwd+bwd at batch 128 + SGD(m=0.9)) "
        f"{t_train * 1e3:.3f} ms"
    )
    if meta_in_situ:
        print("  amortized meta-step cost (in situ cost / K):")
    for label in libraries:
        if ("SGD(m=0.9)", label) not in meta_in_situ:
            continue
        in_situ = meta_in_situ["SGD(m=0.9)", label]
        for k in (50, 100):
            shares = [f"{in_situ / (k * bare_step[n]) * 100:.2f}% of a {n} step" for n in INNERS]
            shares.append(f"{in_situ / (k * t_train) * 100:.2f}% of a training step")
            print(f"    K = {k:>3}{label}: " + ", ".join(shares))

    print(f"\nload average at end: {_load()}; took {time.perf_counter() - started:.0f} s")
    print("\nstate bytes per parameter (measured from the state tensors):")
    for name in INNERS:
        for label in libraries:
            tlr_total = sum(extra_bytes[name, label].values())
            detail = ", ".join(f"{k} {v:.2f}" for k, v in extra_bytes[name, label].items())
            inner_total = sum(inner_bytes[name].values())
            inner_detail = ", ".join(f"{k} {v:.2f}" for k, v in inner_bytes[name].items())
            print(
                f"  {name + label:<{width - 1}} TLR adds {tlr_total:.2f} ({detail}); the inner keeps "
                f"{inner_total:.2f} ({inner_detail})"
            )


if __name__ == "__main__":
    main()
