"""Run an experiment's grid: resumable, in parallel worker processes, or one shard of it per machine."""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from .experiments import Experiment
from .progress import progress_bar
from .records import RunConfig, read_record

__all__ = [
    "SweepInterrupted",
    "SweepResult",
    "default_threads",
    "parse_shard",
    "plan",
    "record_path",
    "records_dir",
    "sweep",
]

_DATA_CACHE: dict[tuple[str, str | None], Any] = {}

_Job = TypeVar("_Job")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard must satisfy 0 <= i < n, got {text!r}")
    return i, n


def records_dir(out_dir: str | os.PathLike, experiment: str, budget: str) -> Path:
    """The folder a sweep writes its run records to (and resumes from)."""
    return Path(out_dir) / experiment / budget


def record_path(out_dir: str | os.PathLike, experiment: str, budget: str, config: RunConfig) -> Path:
    return records_dir(out_dir, experiment, budget) / f"{config.run_id}.json"


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
    experiment: Experiment,
    *,
    budget: str,
    seeds: int,
    shard: tuple[int, int] = (0, 1),
    workloads: Sequence[str] | None = None,
) -> list[RunConfig]:
    """The runs of this shard, in a deterministic order (sorted by run id, then every n-th); with
    ``workloads``, only the runs on those (each must be one of the experiment's at this budget)."""
    i, n = shard
    configs = sorted(experiment.expand(budget, seeds), key=lambda c: c.run_id)
    if workloads is not None:
        if isinstance(workloads, str):
            raise TypeError("workloads must be a sequence of workload names, not one string")
        present = sorted({c.workload for c in configs})
        unknown = [w for w in workloads if w not in present]
        if unknown or not workloads:
            raise ValueError(
                f"workloads: {', '.join(map(repr, unknown)) or 'none given'}: the experiment "
                f"{experiment.name!r} at budget {budget!r} runs {', '.join(present)}"
            )
        configs = [c for c in configs if c.workload in workloads]
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


def _dataset(workload: str) -> str:
    from .workloads import get_workload

    try:
        return get_workload(workload).dataset
    except ValueError:
        return ""


def default_threads(environ: Mapping[str, str] | None = None) -> int:
    """Torch threads per run when the caller names none: ``$OMP_NUM_THREADS`` if the user set it, else 1.

    Not ``cpu_count // workers``: on a machine others share, OpenMP threads that spin-wait on busy cores
    made a two-thread digits run 5x slower than a one-thread one, and the small models here gain little
    from more threads on an idle machine.
    """
    text = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").strip()
    if not text:
        return 1
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"OMP_NUM_THREADS must be a positive int, got {text!r}") from None
    if value < 1:
        raise ValueError(f"OMP_NUM_THREADS must be a positive int, got {text!r}")
    return value


def _run_one(
    config_dict: dict[str, Any], path: str, data_dir: str | None, device: str, threads: int, progress: bool
) -> str:
    import torch

    from .runner import _load_data, _task_class, run
    from .workloads import get_workload

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        config = RunConfig.from_dict(config_dict)
        workload = get_workload(config.workload)
        budget = workload.budget(config.budget)
        key = (workload.dataset, data_dir)
        # Worker processes live for the whole sweep: load each data set once per process.
        if _task_class(workload).whole_data and key not in _DATA_CACHE:
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
    workloads: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
    log_error: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every unfinished run of the experiment's grid (this shard's part of it).

    A finished run is never redone; a run that fails is reported (through ``log_error``, default ``log``)
    and the sweep goes on, so one bad configuration loses no other run's work. A data set that cannot be
    loaded fails its runs without retrying it (see ``SweepResult.data_errors``). Each run uses
    ``threads`` torch threads (default: :func:`default_threads`, i.e. ``$OMP_NUM_THREADS`` or 1); a caller
    that set ``torch.set_num_threads`` itself passes ``threads=torch.get_num_threads()`` to keep it.
    """
    log_error = log_error or log
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    configs = plan(experiment, budget=budget, seeds=seeds, shard=shard, workloads=workloads)
    result = SweepResult()
    todo = []
    for config in configs:
        path = record_path(out_dir, experiment.name, budget, config)
        if _finished(path):
            result.skipped.append(path)
        else:
            todo.append((config, path))
    # Float reductions depend on the thread count: every run gets the same, stated count.
    if threads is None:
        threads = default_threads()
    elif not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    log(
        f"{experiment.name} [{budget}] shard {shard[0]}/{shard[1]}: {len(configs)} runs, "
        f"{len(result.skipped)} already finished, {len(todo)} to run with {workers} worker(s) × "
        f"{threads} torch thread(s); records in {records_dir(out_dir, experiment.name, budget)}"
    )
    data_dir_s = None if data_dir is None else str(data_dir)

    def finished(job: tuple[RunConfig, Path], error: Exception | None) -> None:
        config, path = job
        if error is None:
            result.done.append(path)
        elif _is_data_error(error):
            dataset = _dataset(config.workload)
            if dataset in result.data_errors:
                result.failed[config.run_id] = f"data set {dataset!r} could not be loaded (see above)"
            else:
                result.data_errors[dataset] = error
                result.failed[config.run_id] = str(error)
                log_error(f"run {config.run_id} failed: {error}\nThe other runs on {dataset!r} are skipped.")
        else:
            text = "".join(traceback.format_exception(error))
            result.failed[config.run_id] = text
            log_error(f"run {config.run_id} failed:\n{text}")

    def data_failed(job: tuple[RunConfig, Path]) -> Exception | None:
        """The error an earlier run got loading this run's data set: this run would fail the same way."""
        if not result.data_errors:  # asked of every waiting run after each failure: keep the usual case cheap
            return None
        return result.data_errors.get(_dataset(job[0].workload))

    # A run draws its own bar only in this process: the workers' bars would overwrite one another.
    jobs = [
        ((c, p), (c.to_dict(), str(p), data_dir_s, device, threads, progress and workers == 1))
        for c, p in todo
    ]
    try:
        _run_jobs(
            jobs,
            _run_one,
            workers=workers,
            finished=finished,
            skip=data_failed,
            bar=experiment.name if progress else None,
            bar_counts_failed=True,
        )
    except KeyboardInterrupt:
        folder = records_dir(out_dir, experiment.name, budget)
        kept = sum(1 for path in folder.glob("*.json") if _finished(path))
        raise SweepInterrupted(kept, folder) from None
    return result


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep: ``kept`` finished records are in ``folder``, and a rerun resumes from them."""

    def __init__(self, kept: int, folder: Path) -> None:
        super().__init__(f"{kept} runs kept in {folder}; rerun the same command to resume")
        self.kept = kept
        self.folder = folder


def _run_jobs(
    jobs: Sequence[tuple[_Job, tuple[Any, ...]]],
    worker: Callable[..., object],
    *,
    workers: int,
    finished: Callable[[_Job, Exception | None], None],
    skip: Callable[[_Job], Exception | None] | None = None,
    bar: str | None = None,
    bar_counts_failed: bool = False,
) -> None:
    """Call ``worker(*args)`` for each ``(job, args)``: here, in order, when ``workers`` is 1, else in that
    many spawned worker processes (then ``worker`` and its arguments must pickle). ``finished(job, error)``
    is called once per job as it ends, with None or the Exception it raised; Ctrl-C stops the workers and
    propagates (see :func:`_stopped_on_interrupt`).

    ``skip(job)``, asked before a job starts, is the error to report for it instead of running it, or None.
    Its answer may change only when a job fails: a pool asks its waiting jobs again only then.

    ``bar`` names a progress bar over the jobs (None: no bar); with ``bar_counts_failed`` it shows how
    many failed beside it, since a bar that fills up says nothing of them.
    """
    # Off a terminal (a cluster job's log), the bar is redrawn once a minute and runs draw none: it may be
    # the log's only sign of life, and every redraw there is another line.
    progress = None if bar is None else progress_bar(len(jobs), desc=bar, unit="run", quiet_interval_s=60.0)
    failures = 0

    def end(job: _Job, error: Exception | None) -> None:
        nonlocal failures
        finished(job, error)
        if progress is not None:
            if error is not None:
                failures += 1
            if bar_counts_failed and failures:
                progress.set_postfix_str(f"{failures} failed", refresh=False)
            progress.update(1)

    try:
        if workers == 1:
            for job, args in jobs:
                error = None if skip is None else skip(job)
                if error is None:
                    try:
                        worker(*args)
                    except Exception as exc:
                        error = exc
                end(job, error)
        elif jobs:
            # The workers ignore Ctrl-C (each would print its own traceback): this process stops them.
            pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=get_context("spawn"), initializer=_ignore_sigint
            )
            with _stopped_on_interrupt(pool):
                futures = {pool.submit(worker, *args): job for job, args in jobs}
                skipped: dict[Future[object], Exception] = {}
                for future in as_completed(futures):
                    if future.cancelled():
                        end(futures[future], skipped[future])
                        continue
                    error = None
                    try:
                        future.result()
                    except Exception as exc:
                        error = exc
                    end(futures[future], error)
                    if error is not None and skip is not None:
                        # Waiting jobs that this failure condemns are not started (running ones go on).
                        for other, job in futures.items():
                            if not other.done() and (why := skip(job)) is not None and other.cancel():
                                skipped[other] = why
    finally:
        if progress is not None:
            progress.close()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _stopped_on_interrupt(pool: ProcessPoolExecutor) -> Iterator[ProcessPoolExecutor]:
    """``pool`` as ``with pool:`` gives it, except that Ctrl-C kills its workers instead of waiting for
    their runs: a run killed mid-way leaves no record (they are written atomically), so a rerun redoes it."""
    interrupted = False
    try:
        yield pool
    except KeyboardInterrupt:
        interrupted = True
        # ProcessPoolExecutor has no public way to stop a running task; its worker processes are kept here.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
