"""The lines at the top of a report: which runs, which grid, which data and software, how long."""

from __future__ import annotations

from typing import Any

from ..data.origin import describe_origin
from ..outcome import Outcome, outcome
from ..records import RunRecord

__all__ = ["provenance"]


def _origin(record: RunRecord) -> str:
    """Where a run's data came from, in words a reader of another machine can use (never a folder of the
    machine that ran it): records written since runs do this themselves hold those words already; older
    ones hold the path, translated here."""
    return describe_origin(
        record["workload"]["dataset"], record.get("data_source", ""), record.get("data_checksums")
    )


def provenance(records: list[RunRecord], grid: str | None) -> list[str]:
    """``grid``: the budget of the experiment's grid the records were run from (None: no one grid)."""
    budgets = sorted({r["config"]["budget"] for r in records})
    sources = sorted(
        {
            f"{r['workload']['dataset']}: {_origin(r)} ({r['n_train']} train / {r['n_test']} test)"
            for r in records
        }
    )
    envs = sorted(
        {
            f"torch {r['environment']['torch']}, ntlr {r['environment']['ntlr']}, "
            f"git {str(r['environment'].get('git_sha'))[:10]}"
            f"{' (uncommitted changes)' if r['environment'].get('git_dirty') else ''}, {r['device']}"
            f"{_processor(r['environment'])}"
            for r in records
        }
    )
    epochs = sorted({f"{r['workload']['name']}: {r['workload']['budget']['epochs']} epochs" for r in records})
    wall = sum(r["wall_time_s"] for r in records)
    outcomes = [outcome(r) for r in records]
    diverged, stalled = outcomes.count(Outcome.DIVERGED), outcomes.count(Outcome.STALLED)
    # The grid's budget and the workloads' differ where a grid runs its workloads at another budget (the
    # gauntlet's tiers run theirs at cpu; Table 1's cpu stand-in runs at the paper's epochs).
    of_grid = f" of the `--budget {grid}` grid" if grid else ""
    return [
        f"- runs: {len(records)} ({diverged} diverged, {stalled} stalled){of_grid}; workloads at budget "
        f"{', '.join(budgets)}: {'; '.join(epochs)}",
        "- diverged: final training loss non-finite or above the initial one; stalled: above half of it",
        f"- data: {'; '.join(sources)}",
        f"- software: {'; '.join(envs)}",
        f"- total run time: {wall / 60:.1f} min",
    ]


def _processor(env: dict[str, Any]) -> str:
    """ " (<cpu>, <vector capability>)" where the record names them (records before 2026-12-04 do not)."""
    parts = [str(env[key]) for key in ("cpu", "cpu_capability") if env.get(key)]
    return f" ({', '.join(parts)})" if parts else ""
