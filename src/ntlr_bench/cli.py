"""``ntlr-bench``: run, sweep and report the paper's experiments."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .budgets import BUDGET_MEANINGS, BUDGETS

if TYPE_CHECKING:
    from .experiments import Experiment
    from .records import RunRecord
    from .workloads import Budget

__all__ = ["main"]

# The shell's status for a command stopped by Ctrl-C (128 + SIGINT).
_INTERRUPTED = 130


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    return overrides


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", default="cpu", choices=BUDGETS, help="epochs/data scale (default: cpu)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the data sets (default: $NTLR_DATA_DIR, system folders, cache)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default: cpu)")
    # --runs as well: report and pack read the records folder under that name.
    p.add_argument(
        "--out", "--runs", default="runs", dest="out", help="folder for run records (default: runs)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (default: $OMP_NUM_THREADS if set, else 1: more threads collapse on "
        "a machine others share)",
    )


def _cmd_list(args: argparse.Namespace) -> int:
    from .data import DATASETS
    from .experiments import EXPERIMENTS
    from .optimizers import OPTIMIZERS
    from .workloads import WORKLOADS

    print("budgets (--budget):")
    for budget in BUDGETS:
        print(f"  {budget:26s} {BUDGET_MEANINGS[budget]}")
    print("workloads (epochs at smoke / cpu / paper / long; 'of N': on N training examples):")
    for name, spec in WORKLOADS.items():
        epochs = " / ".join(_epochs(spec.budget(b)) for b in BUDGETS)
        print(f"  {name:26s} {spec.description} ({epochs})")
    print("optimizers:")
    for name, optimizer in OPTIMIZERS.items():
        extra = f" [pip: {optimizer.package}]" if optimizer.package else ""
        print(f"  {name:26s} {optimizer.description}{extra}")
    print("experiments:")
    for name, exp in EXPERIMENTS.items():
        sizes = {b: len(exp.expand(b)) for b in BUDGETS}
        print(f"  {name:26s} {exp.description} (runs: {sizes})")
    print("data sets:")
    for name, dataset in DATASETS.items():
        print(f"  {name:26s} {dataset.description}")
    return 0


def _epochs(budget: Budget) -> str:
    """A budget's length in a few characters: its epochs, and the examples it keeps where it keeps fewer."""
    limit = f" of {budget.train_limit}" if budget.train_limit is not None else ""
    steps = f"×{budget.steps_per_epoch} steps" if budget.steps_per_epoch is not None else ""
    return f"{budget.epochs}{steps}{limit}"


def _relaunch_with_torchrun(nproc: int) -> int:
    """Run this same command under torchrun (DDP) with ``nproc`` processes on this machine."""
    import subprocess

    # The children see WORLD_SIZE instead; torchrun's own parser would also take --nproc for itself.
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            argv.append(arg)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "ntlr_bench",
        *argv,
    ]
    return subprocess.call(cmd)


def _cmd_run(args: argparse.Namespace) -> int:
    import os

    from .records import RunConfig

    if args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch_with_torchrun(args.nproc)
    import torch

    from .runner import run
    from .sweep import default_threads

    # As a sweep's runs: torch's own default (every core) collapses on a machine others share.
    torch.set_num_threads(args.threads if args.threads is not None else default_threads())

    config = RunConfig(
        workload=args.workload,
        optimizer=args.optimizer,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        budget=args.budget,
        overrides=_parse_overrides(args.set),
    )
    path = Path(args.out) / "single" / f"{config.run_id}.json"
    record = run(
        config,
        out=path,
        data_dir=args.data_dir,
        device=args.device,
        progress=not args.no_progress,
        on_epoch=None if args.no_progress else (lambda e: print(json.dumps(e), file=sys.stderr)),
    )
    if record["world_size"] > 1 and int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"{_verdict(record, args.budget)}: {json.dumps(record['final'])}")
    print(f"record: {path}")
    return 0


def _verdict(record: RunRecord, budget: str) -> str:
    """How a run ended, in the line ``run`` prints: a smoke run trains too briefly for a stall or a loss
    above its start to mean anything, so it is not called one."""
    from .outcome import Outcome, final_train_loss, initial_loss, outcome

    if record["diverged"]:  # a non-finite loss is a fault at any budget
        return "DIVERGED at step {}".format(record["diverged_at_step"])
    result = outcome(record)
    if result is Outcome.OK:
        return "finished"
    losses = f"final training loss {final_train_loss(record):.4g}, initial {initial_loss(record):.4g}"
    if budget == "smoke":
        return f"finished (smoke budget: a plumbing check, not a convergence test; {losses})"
    return f"finished but {result.value.upper()} ({losses})"


def _check_device(text: str) -> None:
    """Refuse a CUDA device this torch cannot use before anything runs: torch's own answer is a traceback
    from deep in the run (or, in a sweep, one per run)."""
    if text in ("cpu", "auto"):
        return
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"--device: {text!r} is not a torch device; use cpu, cuda, cuda:N or auto") from None
    if device.type != "cuda":
        return
    if not torch.cuda.is_available():
        where = "in this torch build" if torch.version.cuda is None else "on this machine"
        raise ValueError(
            f"--device: CUDA is not available {where} (torch.cuda.is_available() is False); "
            "use --device cpu or auto"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"--device: {text} is out of range: this machine has {count} CUDA device(s), cuda:0 to "
            f"cuda:{count - 1}"
        )


def _sweep(args: argparse.Namespace, name: str) -> int:
    from .experiments import get_experiment
    from .sweep import SweepInterrupted, parse_shard, sweep

    try:
        result = sweep(
            get_experiment(name),
            out_dir=args.out,
            budget=args.budget,
            seeds=args.seeds,
            workers=args.workers,
            shard=parse_shard(args.shard),
            data_dir=args.data_dir,
            device=args.device,
            progress=not args.no_progress,
            threads=args.threads,
            workloads=None if getattr(args, "workloads", None) is None else args.workloads.split(","),
            log_error=lambda text: print(text, file=sys.stderr),
        )
    except SweepInterrupted as stop:
        print(f"\nntlr-bench: interrupted: {stop}", file=sys.stderr)
        return _INTERRUPTED
    print(
        f"{len(result.done)} runs done, {len(result.skipped)} already finished, {len(result.failed)} failed"
    )
    return 1 if result.failed else 0


def _report(
    name: str,
    runs: list[str],
    budget: str | None,
    out: str | None,
    records_dirs: list[str] | None = None,
) -> Path:
    from .experiments import get_experiment
    from .report import read_records, report_command, write_report
    from .report.command import report_budget

    experiment = get_experiment(name)
    if records_dirs:  # records folders as they are (the ones committed beside the reports)
        dirs = [Path(d) for d in records_dirs]
        default_out = dirs[0].parent
    else:
        budget = budget or "cpu"
        dirs = [Path(d) / name / budget for d in runs]
        default_out = Path(runs[0]) / name / budget / "report"
    present = [d for d in dirs if d.is_dir()]
    if records_dirs and len(present) < len(dirs):
        # A folder named on the command line that is not there is a typo, not an empty sweep.
        missing = ", ".join(str(d) for d in dirs if not d.is_dir())
        raise ValueError(f"--records {missing}: no such folder")
    records = read_records(present)
    if not records:
        where = ", ".join(str(d) for d in dirs)
        raise ValueError(
            f"no records of {name!r}{f' at budget {budget!r}' if budget else ''} in {where}: run "
            f"'ntlr-bench sweep {name}' first, or point --runs/--records at its records"
        )
    records = _distinct(records)
    # Records folders as they are tell their grid by what they hold.
    budget = report_budget(experiment, records, budget)
    records = _of_grid(experiment, records, budget)
    command = report_command(name, budget, records=records_dirs or (), runs=() if records_dirs else runs)
    return write_report(experiment, records, out or default_out, budget=budget, command=command)


def _budget_options(records: list[RunRecord]) -> str:
    from .report.command import record_budgets

    return " or ".join(f"--budget {b}" for b in record_budgets(records))


def _note(text: str) -> None:
    print(f"ntlr-bench: {text}", file=sys.stderr)


def _distinct(records: list[RunRecord]) -> list[RunRecord]:
    """One record per run, saying how many were left out: a run read twice (overlapping shards or folders)
    would count as two seeds of its cell."""
    from .report.command import distinct_runs

    kept = distinct_runs(records)
    if len(kept) < len(records):
        _note(
            f"report: left out {len(records) - len(kept)} duplicate record(s) of a run already read (same "
            "run id, or same config and seed): the first found of each is kept (folders in the order given, "
            "files in path order)"
        )
    return kept


def _of_grid(experiment: Experiment, records: list[RunRecord], budget: str) -> list[RunRecord]:
    """The records of the ``budget`` grid, saying how many were left out: a cell averaging a smoke run with
    a cpu one would compare runs of different lengths as if they were seeds."""
    from .report.command import of_grid, record_budgets

    kept, left = of_grid(experiment, records, budget)
    if not kept:
        raise ValueError(
            f"--budget: none of the records ran at the budget of the {budget} grid; they ran at "
            f"{', '.join(record_budgets(records))}: pass --budget with one of those"
        )
    if left:
        _note(
            f"report: left out {len(left)} of {len(records)} records: they ran at budget "
            f"{', '.join(record_budgets(left))}, not the `--budget {budget}` grid's "
            f"{', '.join(record_budgets(kept))} ({_budget_options(left)} reports those)"
        )
    return kept


def _cmd_report(args: argparse.Namespace) -> int:
    path = _report(args.experiment, args.runs, args.budget, args.report_dir, args.records)
    print(f"report: {path}")
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    from collections import Counter

    from .rerun import Verdict, find_records, rerun_records

    results = rerun_records(
        find_records(args.records),
        out_dir=Path(args.out) / "rerun",
        data_dir=args.data_dir,
        device=args.device,
        workers=args.workers,
        threads=args.threads,
        rtol=args.rtol,
        progress=not args.no_progress,
        log=lambda text: print(text, file=sys.stderr),
    )
    for result in results:
        print(result.line())
    counts = Counter(r.verdict for r in results)
    print(", ".join(f"{counts[v]} {v.value}" for v in Verdict))
    return 1 if counts[Verdict.DIFFERENT] or counts[Verdict.FAILED] else 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from .experiments import get_experiment
    from .pack import pack_records, records_dir
    from .report import load_records

    get_experiment(args.experiment)  # a known name, or the list of them
    dirs = [Path(d) / args.experiment / args.budget for d in args.runs]
    records = load_records(d for d in dirs if d.is_dir())
    if not records:
        raise ValueError(f"no records of {args.experiment!r} at budget {args.budget!r} under {args.runs}")
    dest = Path(args.dest) if args.dest else records_dir(args.experiment)
    written = pack_records(records, dest, max_points=args.max_points)
    size = sum(p.stat().st_size for p in written)
    print(f"{len(written)} records packed into {dest} ({size / 1024:.0f} KiB)")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .data import DATASETS, load

    name = args.dataset.strip().lower().replace("-", "_")
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {args.dataset!r}")
    data = load(name, args.data_dir, download=True)
    print(f"{name}: {getattr(data, 'source', '') or 'ready'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    start = time.monotonic()
    args.seeds, args.workers, args.shard = 1, 1, "0/1"
    code = _sweep(args, "demo")
    if code == _INTERRUPTED:
        return code
    path = _report("demo", [args.out], args.budget, None)
    print(f"report: {path}")
    # The README quotes this line: the time on the machine it ran on, whatever else was running there.
    print(f"demo took {time.monotonic() - start:.0f} s")
    return code


def plain_text(doc: str | None) -> str:
    """A docstring as a terminal shows it: reStructuredText literals and roles unwrapped to their text."""
    text = re.sub(r":[a-z]+:`([^`]*)`", r"\1", doc or "")
    return re.sub(r"``([^`]*)``", r"\1", text).strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ntlr-bench",
        description=plain_text(__doc__),
        epilog="Without a command, prints this help and exits with status 2.",
    )
    # Not required=True: argparse would answer a bare ntlr-bench with "arguments are required: cmd".
    sub = parser.add_subparsers(dest="cmd", metavar="command")

    p = sub.add_parser("list", help="workloads, optimizers, experiments and data sets")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "run",
        help="train one workload with one optimizer",
        description="Train one workload with one optimizer and write its run record (runs/single/ by "
        "default). To compare optimizers and get a report with tables and curves: 'ntlr-bench sweep "
        "<experiment>' then 'ntlr-bench report <experiment>' ('ntlr-bench list' names the experiments); "
        "'ntlr-bench demo' does both for SGD against TLR-SGD on digits.",
    )
    p.add_argument("--workload", required=True)
    p.add_argument("--optimizer", required=True)
    p.add_argument("--lr", type=float, required=True, help="initial learning rate (or scale)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the workload's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes on this machine: >1 launches through torchrun (DDP; gloo on CPU)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="optimizer hyperparameter, e.g. --set gamma=0.2 --set p=0.33",
    )
    _add_common(p)
    _add_threads(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sweep", help="run an experiment's grid (resumable)")
    p.add_argument("experiment", help="an experiment name (see the experiments of 'ntlr-bench list')")
    p.add_argument(
        "--seeds", type=int, default=1, help="run each cell with seeds 0 … N-1 (default: 1, seed 0 only)"
    )
    p.add_argument("--workers", type=int, default=1, help="local worker processes")
    p.add_argument("--shard", default="0/1", help="i/n: run the i-th of n deterministic slices")
    p.add_argument(
        "--workloads", default=None, metavar="W1,W2", help="run only the grid's runs on these workloads"
    )
    _add_common(p)
    _add_threads(p)
    p.set_defaults(func=lambda a: _sweep(a, a.experiment))

    p = sub.add_parser("report", help="figures and tables from an experiment's records")
    p.add_argument("experiment", help="an experiment name (see the experiments of 'ntlr-bench list')")
    p.add_argument(
        "--runs",
        action="append",
        default=None,
        help="records folder (repeat to merge shards from several; default: runs)",
    )
    p.add_argument(
        "--budget",
        default=None,
        choices=BUDGETS,
        help="the grid the records come from (default: cpu; with --records, the smallest grid holding them)",
    )
    p.add_argument(
        "--records",
        action="append",
        default=None,
        help="read the records in this folder instead (repeatable), e.g. the ones committed in "
        "docs/experiments/<experiment>/records; the report then defaults to the folder above it",
    )
    p.add_argument("--report-dir", default=None, help="default: <runs>/<experiment>/<budget>/report")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "pack",
        help="write an experiment's records compressed, curves thinned, for committing beside its report",
        description="Copy an experiment's run records into docs/experiments/<experiment>/records as "
        ".json.gz, each per-step curve kept at every k-th step (at most --max-points points; config, "
        "final, evals and history whole), so that 'ntlr-bench report <experiment> --records "
        "docs/experiments/<experiment>/records' regenerates the report without training.",
    )
    p.add_argument("experiment", help="an experiment name (see the experiments of 'ntlr-bench list')")
    p.add_argument("--runs", action="append", default=None, help="records folder (repeatable; default: runs)")
    p.add_argument("--budget", default="cpu", choices=BUDGETS)
    p.add_argument("--dest", default=None, help="default: docs/experiments/<experiment>/records")
    p.add_argument("--max-points", type=int, default=500, help="most points per curve (default: 500)")
    p.set_defaults(func=_cmd_pack)

    p = sub.add_parser(
        "rerun",
        help="rerun run records from their own configs and compare the results",
        description="Run each record's configuration again (same seed, budget and torch thread count) into "
        "<out>/rerun/ (resumable) and compare: 'identical' (final metrics bit for bit and every meta-step's "
        "status the same), 'close' (the same decisions, final metrics within --rtol), 'different' or "
        "'failed'; a result that differs says when the record was made on another processor, vector unit, "
        "torch or thread count. Exit status 1 when any differs or failed.",
    )
    p.add_argument("records", nargs="+", help="record files (.json, .json.gz) or folders holding them")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for 'close' (default: 0)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: the record's own count)"
    )
    p.add_argument("--device", default=None, help="default: the record's own device")
    p.add_argument("--data-dir", default=None, help="folder holding the data sets")
    p.add_argument("--out", default="runs", help="the reruns go to <out>/rerun (default: runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_rerun)

    p = sub.add_parser(
        "download",
        help="fetch a data set into the cache (checksummed), or say where it already is",
        description="Find a data set as a run would, and if it is nowhere, download it into the cache "
        "($NTLR_CACHE_DIR, default ~/.cache/ntlr) and check it against its published checksums. Run it on "
        "a machine with internet access; data sets without a public download say how to get them.",
    )
    p.add_argument("dataset", help="a data set name, e.g. mnist (see the data sets of 'ntlr-bench list')")
    p.add_argument("--data-dir", default=None, help="a folder to look in first")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("demo", help="SGD vs TLR on digits from four initial rates, with a report")
    _add_common(p)
    _add_threads(p)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # a sweep says what it kept (_sweep); elsewhere, no traceback either
        print("\nntlr-bench: interrupted", file=sys.stderr)
        return _INTERRUPTED


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd is None:
        parser.print_help()
        return 2
    if getattr(args, "runs", "unset") is None:
        args.runs = ["runs"]
    from .data.errors import DataError, cli_messages

    with cli_messages():  # data errors name --data-dir and 'ntlr-bench download', not data_dir=
        try:
            if getattr(args, "device", None) is not None:  # run, sweep, demo and rerun
                _check_device(args.device)
            return args.func(args)
        except (ValueError, FileNotFoundError, DataError) as exc:
            # Bad input, or data missing, truncated, corrupt or failing its checksum: one clear message
            # (a missing data set's lists every place looked), not a traceback. A TypeError is a bug's
            # symptom, not the user's: it keeps its traceback.
            print(f"ntlr-bench: error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
