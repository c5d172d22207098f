"""The low-memory mode (``TLR(sketch=s)``) against the exact mode, run for run, from ntlr-bench records.

Matches each record whose TLR overrides carry ``sketch`` with the record of the same configuration
without it, and prints a markdown table: final training loss and the final trained rate of both, their
ratio, and the window buffers' bytes per float32 parameter (8 exact, 8/s sketched, per the sizes the
records hold).

    python benchmarks/sketch_vs_exact.py --exact docs/experiments/gauntlet_long/records \\
        --sketch docs/low_memory/records
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path
from typing import Any


def load(folder: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(folder.glob("*.json*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            records.append(json.load(handle))
    return records


def _key(config: dict[str, Any]) -> str:
    overrides = {k: v for k, v in config["overrides"].items() if k != "sketch"}
    return json.dumps({**config, "overrides": overrides}, sort_keys=True)


def table(exact: list[dict[str, Any]], sketched: list[dict[str, Any]]) -> list[str]:
    by_key = {_key(r["config"]): r for r in exact if "sketch" not in r["config"]["overrides"]}
    rows = [
        "| workload | α0 | exact: final train loss / rate | sketch: final train loss / rate | loss ratio "
        "| buffers B/param |",
        "|---|---|---|---|---|---|",
    ]
    ratios = []
    for record in sorted(sketched, key=lambda r: (r["config"]["workload"], -r["config"]["lr"])):
        config = record["config"]
        stride = config["overrides"].get("sketch")
        twin = by_key.get(_key(config))
        if stride is None or twin is None:
            continue
        loss, twin_loss = record["final"]["train_loss"], twin["final"]["train_loss"]
        ratio = loss / twin_loss if twin_loss else math.nan
        ratios.append(ratio)
        rows.append(
            f"| {config['workload']} | {config['lr']:g} | {twin_loss:.4g} / {twin['lr'][-1][0]:.3g} | "
            f"{loss:.4g} / {record['lr'][-1][0]:.3g} | {ratio:.3f} | {8 / stride:.2f} (exact 8) |"
        )
    if ratios:
        worst = max(abs(r - 1.0) for r in ratios)
        rows += ["", f"{len(ratios)} pairs; the largest relative difference in final loss: {worst:.1%}"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exact", type=Path, required=True, help="folder of the exact mode's records")
    parser.add_argument("--sketch", type=Path, required=True, help="folder of the sketched runs' records")
    args = parser.parse_args()
    print("\n".join(table(load(args.exact), load(args.sketch))))


if __name__ == "__main__":
    main()
