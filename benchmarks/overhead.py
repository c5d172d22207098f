"""Overhead of ``ntlr.TLR`` over its inner optimizer, measured side by side in one run.

Prints, for SGD (momentum 0.9) and Adam on an MLP of about 12.6M parameters (grads preset, so only
``optimizer.step()`` is timed: the strictest comparison, a training step also pays forward and backward):

* the mean step time of the bare inner optimizer and of ``TLR(inner)`` for K = 1, 10, 100, and their
  ratio. The two are interleaved step by step (bare, TLR, bare, TLR, ...; each on its own copy of the
  model), so a shared machine's load drifts hit both alike. Times are summed per block of whole windows
  (K steps, at least 10), so a block holds its meta-steps in the right proportion; the table shows the
  median over blocks of the mean step time and of the per-block ratio;
* the cost of one meta-step in units of inner SGD steps: in situ (TLR at K = 1 minus bare, per block)
  and isolated (``window_inner_products`` + ``advance_window_`` on the model's tensors, paired with a
  plain SGD step each time);
* the extra bytes per parameter, summed from the state tensors (not hard-coded).

    python benchmarks/overhead.py [--quick] [--threads 1] [--device cpu] [--blocks 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import ntlr
from ntlr import TLR, advance_window_, window_inner_products

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
    params = [nn.Parameter(p.detach().to(device)) for layer in layers for p in layer.parameters()]
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


def reset_rates(opt: TLR) -> None:
    # Constant grads make consecutive windows near-identical, so the factor would climb ×100 per
    # meta-step; keep the weights in a normal range (no overflow, no denormals) between blocks.
    for group in opt.param_groups:
        group["tlr_factor"] = 1.0


def interleaved(
    bare: torch.optim.Optimizer, tlr: TLR, steps: int, blocks: int, device: torch.device
) -> tuple[float, float, float]:
    """Median over blocks of the mean step time of ``bare``, of ``tlr``, and of their ratio."""
    bare_means, tlr_means, ratios = [], [], []
    for block in range(blocks):
        bare_total = tlr_total = 0.0
        for step in range(steps):
            if (block + step) % 2:  # alternate which one goes first
                tlr_total += timed(tlr.step, device)
                bare_total += timed(bare.step, device)
            else:
                bare_total += timed(bare.step, device)
                tlr_total += timed(tlr.step, device)
        reset_rates(tlr)
        bare_means.append(bare_total / steps)
        tlr_means.append(tlr_total / steps)
        ratios.append(tlr_total / bare_total)
    return statistics.median(bare_means), statistics.median(tlr_means), statistics.median(ratios)


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    widths = QUICK_WIDTHS if args.quick else WIDTHS
    blocks = args.blocks or (3 if args.quick else 5)
    blocks_k100 = max(3, blocks // 2)

    numel = sum(p.numel() for p in make_params(widths, torch.device("cpu")))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"ntlr {ntlr.__version__}, torch {torch.__version__}, python {platform.python_version()}")
    print(
        f"device {device} ({where}), {args.threads} torch thread(s); MLP {'-'.join(map(str, widths))}: "
        f"{numel / 1e6:.1f}M float32 params; optimizer.step() only (grads preset)"
    )
    print(f"load average at start: {_load()}")
    print(
        f"bare and TLR steps interleaved one by one; medians over {blocks} blocks of max(K, 10) steps "
        f"({blocks_k100} for K=100)\n"
    )

    header = f"{'inner':<12}{'K':>5}{'bare ms/step':>15}{'TLR ms/step':>14}{'ratio':>9}{'overhead':>10}"
    print(header)
    print("-" * len(header))
    bare_step: dict[str, float] = {}
    meta_in_situ: dict[str, float] = {}
    extra_bytes: dict[str, dict[str, float]] = {}
    inner_bytes: dict[str, dict[str, float]] = {}
    for name, make in INNERS.items():
        params_bare = make_params(widths, device)
        bare = make(params_bare)
        bare.step()  # initialise the inner state
        bare_times = []
        for k in KS:
            params_tlr = make_params(widths, device)
            # The paper's rule: windows of exactly K steps (the robust rule lengthens them to the
            # momentum's horizon) and the same window mechanics, which are what this measures.
            tlr = TLR(make(params_tlr), update_every=k, rule="paper")
            # Warm up (the inner's state, the first window) and align the blocks with the windows.
            tlr.step()
            while tlr.param_groups[0]["tlr_window_steps"]:
                tlr.step()
            reset_rates(tlr)
            n_blocks = blocks if k < 100 else blocks_k100
            t_bare, t_tlr, ratio = interleaved(bare, tlr, max(k, 10), n_blocks, device)
            bare_times.append(t_bare)
            if k == 1:
                meta_in_situ[name] = t_tlr - t_bare
            print(
                f"{name:<12}{k:>5}{t_bare * 1e3:>15.3f}{t_tlr * 1e3:>14.3f}{ratio:>9.4f}"
                f"{(ratio - 1) * 100:>9.2f}%",
                flush=True,
            )
            extra_bytes[name] = {
                key: v for key, v in state_bytes_per_param(tlr, params_tlr).items() if key.startswith("tlr_")
            }
            inner_bytes[name] = state_bytes_per_param(bare, params_bare)
            del tlr, params_tlr
        bare_step[name] = statistics.median(bare_times)
        del bare, params_bare

    # One meta-step, isolated: the elementwise and reduction work of close + restart on all tensors,
    # each paired with a plain SGD step (no momentum: the cheapest inner step there is).
    plain_params = make_params(widths, device)
    plain = torch.optim.SGD(plain_params, lr=1e-4)
    plain.step()
    snaps = [p.detach().clone() for p in plain_params]
    prev = [torch.zeros_like(p) for p in plain_params]
    foreach = device.type != "cpu"

    def meta_step() -> None:
        window_inner_products(plain_params, snaps, prev, 1e-4, foreach=foreach).tolist()
        advance_window_(plain_params, snaps, prev, 1e-4, foreach=foreach)

    meta_step()
    plain_times, meta_times, meta_ratios = [], [], []
    for _ in range(4 * blocks):
        t_plain_step = timed(plain.step, device)
        t_meta_step = timed(meta_step, device)
        plain_times.append(t_plain_step)
        meta_times.append(t_meta_step)
        meta_ratios.append(t_meta_step / t_plain_step)
    t_plain = statistics.median(plain_times)
    t_meta = statistics.median(meta_times)

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
    in_situ = meta_in_situ["SGD(m=0.9)"]
    print("\nmeta-step cost (one meta-step over all the param tensors):")
    print(
        f"  in situ   TLR(SGD(m=0.9), K=1) - bare    = {in_situ * 1e3:7.3f} ms = {in_situ / t_sgd:5.2f} "
        f"SGD(m=0.9) steps = {in_situ / t_plain:5.2f} plain SGD steps"
    )
    print(
        f"  isolated  inner products + advance = {t_meta * 1e3:7.3f} ms = {t_meta / t_sgd:5.2f} "
        f"SGD(m=0.9) steps = {statistics.median(meta_ratios):5.2f} plain SGD steps (median of pairs)"
    )
    print(
        f"  bare steps: SGD(m=0.9) {t_sgd * 1e3:.3f} ms, plain SGD {t_plain * 1e3:.3f} ms, "
        f"Adam {bare_step['Adam'] * 1e3:.3f} ms; a training step (fwd+bwd at batch 128 + SGD(m=0.9)) "
        f"{t_train * 1e3:.3f} ms"
    )
    print("  amortized meta-step cost (in situ cost / K):")
    for k in (50, 100):
        shares = [f"{in_situ / (k * bare_step[n]) * 100:.2f}% of a {n} step" for n in INNERS]
        shares.append(f"{in_situ / (k * t_train) * 100:.2f}% of a training step")
        print(f"    K = {k:>3}: " + ", ".join(shares))

    print(f"\nload average at end: {_load()}")
    print("\nstate bytes per parameter (measured from the state tensors):")
    for name in INNERS:
        tlr_total = sum(extra_bytes[name].values())
        detail = ", ".join(f"{k} {v:.2f}" for k, v in extra_bytes[name].items())
        inner_total = sum(inner_bytes[name].values())
        inner_detail = ", ".join(f"{k} {v:.2f}" for k, v in inner_bytes[name].items())
        print(
            f"  {name:<11} TLR adds {tlr_total:.2f} ({detail}); the inner keeps {inner_total:.2f} "
            f"({inner_detail})"
        )


if __name__ == "__main__":
    main()
