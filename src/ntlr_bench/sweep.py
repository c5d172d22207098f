"""Run an experiment's grid: resumable, in parallel worker processes, or one shard of it per machine."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .experiments import Experiment
from .progress import progress_bar
from .records import RunConfig, read_record

__all__ = ["SweepResult", "parse_shard", "plan", "record_path", "sweep"]

_DATA_CACHE: dict[tuple[str, str | None], Any] = {}


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard must satisfy 0 <= i < n, got {text!r}")
    return i, n


def record_path(out_dir: str | os.PathLike, experiment: str, budget: str, config: RunConfig) -> Path:
    return Path(out_dir) / experiment / budget / f"{config.run_id}.json"


def _finished(path: Path) -> bool:
    # Records are written atomically, so an existing file is a whole record; a file that is not a record
    # this version reads (written by something else or another version, or a disk error) is redone.
    if not path.is_file():
        return False
    try:
        read_record(path)
    except (OSError, ValueError):
        return False
    return True


def plan(
    experiment: Experiment, *, budget: str, seeds: int, shard: tuple[int, int] = (0, 1)
) -> list[RunConfig]:
    """The runs of this shard, in a deterministic order (sorted by run id, then every n-th)."""
    i, n = shard
    configs = sorted(experiment.expand(budget, seeds), key=lambda c: c.run_id)
    return configs[i::n]


@dataclass
class SweepResult:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # run id → error
    # Data set → the error that loading it raised (missing, truncated, corrupt, bad checksum). Such an
    # error is no run's fault: it is reported once, not as a traceback, and that data set is not retried.
    data_errors: dict[str, Exception] = field(default_factory=dict)


def _is_data_error(error: BaseException) -> bool:
    from .data.errors import DataError, DataNotFoundError

    return isinstance(error, DataError | DataNotFoundError)


def _dataset(config: RunConfig) -> str:
    from .workloads import get_workload

    try:
        return get_workload(config.workload).dataset
    except ValueError:
        return ""


def _run_one(
    config_dict: dict[str, Any], path: str, data_dir: str | None, device: str, threads: int, progress: bool
) -> str:
    import torch

    from .runner import _load_data, run
    from .workloads import get_workload

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        config = RunConfig.from_dict(config_dict)
        workload = get_workload(config.workload)
        budget = workload.budget(config.budget)
        key = (workload.dataset, data_dir)
        # Worker processes live for the whole sweep: load each data set once per process.
        if workload.task != "streaming_classification" and key not in _DATA_CACHE:
            _DATA_CACHE[key] = _load_data(workload, budget, data_dir)
        run(config, out=path, data_dir=data_dir, device=device, progress=progress, data=_DATA_CACHE.get(key))
    finally:
        torch.set_num_threads(previous_threads)
    return path


def sweep(
    experiment: Experiment,
    *,
    out_dir: str | os.PathLike,
    budget: str = "cpu",
    seeds: int = 1,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    data_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    progress: bool = True,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    log_error: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every unfinished run of the experiment's grid (this shard's part of it).

    A finished run is never redone; a run that fails is reported (through ``log_error``, default ``log``)
    and the sweep goes on, so one bad configuration loses no other run's work. A data set that cannot be
    loaded fails its runs without retrying it (see ``SweepResult.data_errors``).
    """
    log_error = log_error or log
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    configs = plan(experiment, budget=budget, seeds=seeds, shard=shard)
    result = SweepResult()
    todo = []
    for config in configs:
        path = record_path(out_dir, experiment.name, budget, config)
        if _finished(path):
            result.skipped.append(path)
        else:
            todo.append((config, path))
    log(
        f"{experiment.name} [{budget}] shard {shard[0]}/{shard[1]}: {len(configs)} runs, "
        f"{len(result.skipped)} already finished, {len(todo)} to run with {workers} worker(s)"
    )
    data_dir_s = None if data_dir is None else str(data_dir)
    # Float reductions depend on the thread count: give each worker an equal, fixed share.
    threads = threads or max(1, (os.cpu_count() or 1) // workers)

    # Off a terminal (a cluster job's log), the sweep's bar refreshes once a minute and runs draw none.
    bar = None
    if progress:
        bar = progress_bar(len(todo), desc=experiment.name, unit="run", quiet_interval_s=60.0)

    def finished(config: RunConfig, path: Path, error: Exception | str | None) -> None:
        if error is None:
            result.done.append(path)
        elif isinstance(error, Exception) and _is_data_error(error):
            dataset = _dataset(config)
            if dataset in result.data_errors:
                result.failed[config.run_id] = f"data set {dataset!r} could not be loaded (see above)"
            else:
                result.data_errors[dataset] = error
                result.failed[config.run_id] = str(error)
                log_error(f"run {config.run_id} failed: {error}\nThe other runs on {dataset!r} are skipped.")
        else:
            text = error if isinstance(error, str) else "".join(traceback.format_exception(error))
            result.failed[config.run_id] = text
            log_error(f"run {config.run_id} failed:\n{text}")
        if bar is not None:
            bar.update(1)

    def data_failed(config: RunConfig, path: Path) -> bool:
        """Whether an earlier run found ``config``'s data set unusable; if so, count this run failed too."""
        if _dataset(config) not in result.data_errors:
            return False
        finished(config, path, result.data_errors[_dataset(config)])
        return True

    try:
        if workers == 1:
            for config, path in todo:
                if data_failed(config, path):
                    continue
                try:
                    _run_one(config.to_dict(), str(path), data_dir_s, device, threads, progress)
                    finished(config, path, None)
                except Exception as exc:
                    finished(config, path, exc)
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = {
                    pool.submit(_run_one, c.to_dict(), str(p), data_dir_s, device, threads, False): (c, p)
                    for c, p in todo
                }
                for future in as_completed(futures):
                    config, path = futures[future]
                    if future.cancelled():
                        data_failed(config, path)
                        continue
                    error = None
                    try:
                        future.result()
                    except Exception as exc:
                        error = exc
                    finished(config, path, error)
                    if error is not None and _is_data_error(error):
                        # Runs on the same data set that have not started yet would fail the same way.
                        for other, (c, _) in futures.items():
                            if _dataset(c) == _dataset(config):
                                other.cancel()
    finally:
        if bar is not None:
            bar.close()
    return result
