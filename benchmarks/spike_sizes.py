"""How large were the loss spikes the default rule rolled back? (docs/rules.md, item 15)

For every TLR run record given, each rolled-back window (after the run's first epoch: a search's early
rollbacks undo a rate far off, not a spike) against the last kept window before it: the rise of the
window's mean training loss, relative to the kept window's mean and in standard errors of that mean (from
successive differences of its per-step losses, as the rule estimates its noise).

Needs records with every step's loss: those a sweep or ``ntlr-bench rerun`` writes (runs/...), not the
committed ones under docs/experiments, which keep every k-th step only.

    python benchmarks/spike_sizes.py runs/rerun/*.json [--min-epoch 1]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from ntlr_bench.records import read_record


def _mean_and_variance(losses: Sequence[float]) -> tuple[float, float]:
    """A window's mean loss and the squared standard error of that mean from successive differences."""
    n = len(losses)
    mean = sum(losses) / n
    if n < 2:
        return mean, math.nan
    mssd = sum((losses[i + 1] - losses[i]) ** 2 for i in range(n - 1)) / (2 * (n - 1))
    return mean, mssd / n


def spikes(record: dict, min_epoch: float) -> list[tuple[float, float, float]]:
    """(epoch, relative rise, rise in standard errors) of each rolled-back window past ``min_epoch``."""
    losses, history = record["step_loss"], record.get("optimizer_history") or []
    if len(losses) < record["total_steps"]:
        raise SystemExit(f"{record['run_id']}: per-step losses thinned; use an uncommitted record")
    out = []
    for i, entry in enumerate(history):
        epoch = entry["step"] / record["steps_per_epoch"]
        if entry["status"] != "rollback" or epoch < min_epoch:
            continue
        kept = next((h for h in reversed(history[:i]) if h["status"] != "rollback"), None)
        if kept is None:
            continue
        mean, _ = _mean_and_variance(losses[entry["step"] - entry["window_steps"] : entry["step"]])
        ref, variance = _mean_and_variance(losses[kept["step"] - kept["window_steps"] : kept["step"]])
        rise = mean - ref
        out.append((epoch, rise / abs(ref), rise / math.sqrt(2.0 * variance)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+")
    parser.add_argument("--min-epoch", type=float, default=1.0)
    args = parser.parse_args()
    everything = []
    for path in args.records:
        record = read_record(Path(path))
        found = spikes(record, args.min_epoch)
        everything += found
        cells = ", ".join(f"epoch {e:.1f}: {r:+.3f} ({z:.1f} se)" for e, r, z in found)
        print(f"{record['run_id']}: {cells or 'none'}")
    if everything:
        rel = [r for _, r, _ in everything]
        zs = [z for _, _, z in everything]
        print(
            f"{len(everything)} rolled-back windows: relative rise {min(rel):.3f} – {max(rel):.3f}, "
            f"{min(zs):.1f} – {max(zs):.1f} standard errors"
        )


if __name__ == "__main__":
    main()
