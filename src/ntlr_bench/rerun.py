"""Rerun committed run records from their own configs and say how far each result reproduces.

A record holds its whole configuration, so the run that made it can be made again: same workload, optimizer,
rates, seed and budget, and the same torch thread count (float reductions depend on it). What comes out is
compared with what the record says: the final metrics, and for TLR the status of every meta-step (a rule
that decided differently is a different run even where the final loss happens to agree).
"""

from __future__ import annotations

import enum
import math
import os
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .outcome import final_train_loss
from .records import RECORD_PATTERNS, RunRecord, read_record
from .sweep import _dataset, _finished, _is_data_error, _run_jobs, _run_one, default_threads

__all__ = [
    "MACHINE_KEYS",
    "Comparison",
    "Reproduction",
    "Verdict",
    "compare",
    "find_records",
    "rerun_records",
]

# The environment facts a run's last digits depend on besides the code: a record made on another
# processor, vector unit, torch or thread count need not reproduce bit for bit.
MACHINE_KEYS = ("cpu", "cpu_capability", "torch", "torch_threads")


class Verdict(enum.Enum):
    IDENTICAL = "identical"  # every final metric bit for bit, every meta-step's status the same
    CLOSE = "close"  # the same decisions, final metrics within the tolerance
    DIFFERENT = "different"
    FAILED = "failed"  # the rerun raised


@dataclass(frozen=True)
class Reproduction:
    """One record against its rerun."""

    source: Path
    rerun: Path
    comparison: Comparison | None  # None when the rerun failed
    committed_loss: float
    rerun_loss: float
    machine: tuple[str, ...]  # MACHINE_KEYS on which the record's environment differs from the rerun's
    unrecorded: tuple[str, ...]  # MACHINE_KEYS the record does not state (older records lack "cpu")
    error: str | None = None

    @property
    def verdict(self) -> Verdict:
        return Verdict.FAILED if self.comparison is None else self.comparison.verdict

    def line(self) -> str:
        if self.comparison is None:
            return (
                f"{self.verdict.value:9}  {self.source.name}: {(self.error or '').strip().splitlines()[-1]}"
            )
        c = self.comparison
        text = (
            f"{c.verdict.value:9}  {self.source.name}: final training loss {self.committed_loss:.6g} → "
            f"{self.rerun_loss:.6g}"
        )
        if c.metric:
            text += f", largest relative difference {c.max_rel_diff:.2g} ({c.metric})"
        if c.decisions_differ:
            text += f", {c.decisions_differ} meta-step decision(s) differ"
        if c.verdict is not Verdict.IDENTICAL:
            if self.machine:
                text += f"; made with another {', '.join(self.machine)}"
            if self.unrecorded:
                text += f"; the record does not state its {', '.join(self.unrecorded)}"
        return text


def find_records(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The record files named, a folder standing for the records directly in it, sorted and deduplicated."""
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted({p for pattern in RECORD_PATTERNS for p in path.glob(pattern)})
            if not inside:
                raise ValueError(f"records: {str(path)!r} holds no run record (*.json or *.json.gz)")
            found.update(dict.fromkeys(inside))
        elif path.is_file():
            found[path] = None
        else:
            raise FileNotFoundError(f"records: {str(path)!r} is neither a record file nor a folder")
    if not found:
        raise ValueError("records: none given")
    return list(found)


def _finals(record: Mapping[str, Any]) -> dict[str, float]:
    final = record.get("final") or {}
    values = {k: float(v) for k, v in final.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    values["diverged"] = float(bool(record.get("diverged")))
    return values


def _rel_diff(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def _statuses(record: Mapping[str, Any]) -> list[tuple[int, int, str]]:
    return [
        (h.get("step", -1), h.get("group", 0), str(h.get("status")))
        for h in record.get("optimizer_history") or []
    ]


class Comparison(NamedTuple):
    verdict: Verdict
    max_rel_diff: float  # over the final metrics
    metric: str  # the final metric with that difference ("" when none differs)
    decisions_differ: int  # meta-steps whose status differs, plus any difference in their count


def compare(committed: RunRecord, rerun: RunRecord, *, rtol: float = 0.0) -> Comparison:
    """How far ``rerun`` reproduces ``committed``. A final metric present in only one of the two counts as
    an infinite difference."""
    old, new = _finals(committed), _finals(rerun)
    diffs = {
        k: _rel_diff(old.get(k, math.nan), new.get(k, math.inf)) for k in sorted(old.keys() | new.keys())
    }
    metric = max(diffs, key=lambda k: diffs[k]) if diffs else ""
    worst = diffs.get(metric, 0.0)
    before, after = _statuses(committed), _statuses(rerun)
    differ = sum(x != y for x, y in zip(before, after, strict=False)) + abs(len(before) - len(after))
    if worst == 0.0 and not differ:
        return Comparison(Verdict.IDENTICAL, 0.0, "", 0)
    verdict = Verdict.CLOSE if worst <= rtol and not differ else Verdict.DIFFERENT
    return Comparison(verdict, worst, metric if worst > 0 else "", differ)


def _machine_differences(committed: RunRecord, rerun: RunRecord) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The machine facts that differ, and those the committed record does not state."""
    before = committed.get("environment") or {}
    after = rerun.get("environment") or {}
    differ = tuple(k for k in MACHINE_KEYS if k in before and before.get(k) != after.get(k))
    return differ, tuple(k for k in MACHINE_KEYS if k not in before)


def _threads_of(record: RunRecord, threads: int | None) -> int:
    if threads is not None:
        return threads
    recorded = (record.get("environment") or {}).get("torch_threads")
    return recorded if isinstance(recorded, int) and recorded >= 1 else default_threads()


def _rerun_path(out_dir: Path, record: RunRecord) -> Path:
    return out_dir / f"{record['run_id']}.json"


def _read_rerun(dest: Path) -> RunRecord | None:
    """The rerun record at ``dest``, or None where none was written (or what is there is not one)."""
    if not dest.is_file():
        return None
    try:
        return read_record(dest)
    except (OSError, ValueError):  # as the sweep's _finished: a file that is not a record is no rerun
        return None


def rerun_records(
    paths: Sequence[Path],
    *,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    device: str | None = None,
    workers: int = 1,
    threads: int | None = None,
    rtol: float = 0.0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[Reproduction]:
    """Rerun each record's config into ``out_dir/<run id>.json`` (a rerun already there is reused, so an
    interrupted call resumes) and compare. Each run uses the record's own torch thread count and device
    unless ``threads`` / ``device`` say otherwise. A run that fails is reported and the others go on; a data
    set that cannot be loaded is tried once, and the records on it that have not started fail with it."""
    if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if threads is not None and not (
        isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    ):
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if not (isinstance(rtol, int | float) and math.isfinite(rtol) and rtol >= 0):
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}")
    out = Path(out_dir)
    committed = {path: read_record(path) for path in paths}  # every file is read before anything runs
    jobs: dict[Path, tuple[dict[str, Any], int, str]] = {}  # the same config twice is run once
    reused = 0
    for record in committed.values():
        dest = _rerun_path(out, record)
        if _finished(dest):
            reused += 1
        elif dest not in jobs:
            jobs[dest] = (record["config"], _threads_of(record, threads), device or record["device"])
    log(
        f"rerun: {len(committed)} record(s), {reused} rerun(s) already in {out}, {len(jobs)} to run "
        f"with {workers} worker(s)"
    )
    errors: dict[Path, str] = {}
    # Data set → the error loading it raised: no record's fault, so said once, and not retried per record.
    data_errors: dict[str, Exception] = {}
    data = None if data_dir is None else str(data_dir)

    def dataset_of(dest: Path) -> str:
        return _dataset(str(jobs[dest][0].get("workload")))

    def finished(dest: Path, error: Exception | None) -> None:
        if error is None:
            return
        if _is_data_error(error):
            dataset = dataset_of(dest)
            # A Reproduction's line shows the error's last line: a not-found message ends with how to get it.
            errors[dest] = f"{error}\ndata set {dataset!r} could not be loaded"
            if dataset in data_errors:
                log(f"rerun of {dest.name} failed: data set {dataset!r} could not be loaded (see above)")
            else:
                data_errors[dataset] = error
                log(f"rerun of {dest.name} failed: {error}\nThe other records on {dataset!r} are not rerun.")
            return
        errors[dest] = "".join(traceback.format_exception(error))
        log(f"rerun of {dest.name} failed: {error}")

    def data_failed(dest: Path) -> Exception | None:
        """The error an earlier rerun got loading this record's data set: this one would fail the same way."""
        if not data_errors:  # asked of every waiting rerun after each failure: keep the usual case cheap
            return None
        return data_errors.get(dataset_of(dest))

    _run_jobs(
        [(dest, (config, str(dest), data, dev, n, False)) for dest, (config, n, dev) in jobs.items()],
        _run_one,
        workers=workers,
        finished=finished,
        skip=data_failed,
        bar="rerun" if progress and jobs else None,
    )
    results = []
    for path, record in committed.items():
        dest = _rerun_path(out, record)
        again = None if dest in errors else _read_rerun(dest)
        if again is None:
            why = errors.get(dest, "no rerun record was written")
            results.append(Reproduction(path, dest, None, final_train_loss(record), math.nan, (), (), why))
            continue
        differ, unrecorded = _machine_differences(record, again)
        comparison = compare(record, again, rtol=rtol)
        loss, loss_again = final_train_loss(record), final_train_loss(again)
        results.append(Reproduction(path, dest, comparison, loss, loss_again, differ, unrecorded))
    return results
