"""Run configurations and self-describing run records: their schema, written atomically, read back checked."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict

__all__ = [
    "RECORD_FORMAT",
    "RECORD_PATTERNS",
    "Evaluation",
    "OptimizerInfo",
    "RecordError",
    "RunConfig",
    "RunRecord",
    "WorkloadInfo",
    "check_record",
    "curve_steps",
    "environment",
    "read_record",
    "thin_record",
    "write_record",
]

# The version of the record schema below. Bump it when a key changes meaning or a required key is added,
# so that a reader refuses what it would misread.
RECORD_FORMAT = "ntlr-bench-run/1"
# A record is a JSON file, or a gzip-compressed one (the records committed beside a report).
RECORD_PATTERNS = ("*.json", "*.json.gz")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. Its ``run_id`` is a hash of these fields."""

    workload: str
    optimizer: str
    lr: float
    batch_size: int | None = None  # None: the workload's
    seed: int = 0
    budget: str = "cpu"
    overrides: dict[str, Any] = field(default_factory=dict)  # optimizer hyperparameters (p, gamma, eta...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def run_id(self) -> str:
        """``<workload>-<optimizer>-lr<lr>-bs<batch>-s<seed>-<hash of every field>``, a file name.

        ``bs`` is the batch size the run trains with: the workload's when the config leaves it None (the
        hash still tells the two apart, so ids written before stay what they were).
        """
        blob = json.dumps(self.to_dict(), sort_keys=True, default=repr).encode()
        digest = hashlib.sha256(blob).hexdigest()[:12]
        return f"{self.workload}-{self.optimizer}-lr{self.lr:g}-bs{self._batch_label()}-s{self.seed}-{digest}"

    def _batch_label(self) -> str:
        if self.batch_size is not None:
            return str(self.batch_size)
        from .workloads import WORKLOADS

        workload = WORKLOADS.get(self.workload)
        # An unknown workload is reported when the run starts; its id needs no batch size until then.
        return str(workload.batch_size) if workload is not None else "default"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(**data)


class _EvaluationBase(TypedDict):
    epoch: int
    step: int  # training steps taken when it was measured


class Evaluation(_EvaluationBase, total=False):
    """One evaluation; which metrics it has depends on the workload."""

    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    bleu: float


class WorkloadInfo(TypedDict):
    name: str
    description: str
    dataset: str
    budget: dict[str, Any]  # workloads.Budget as a dict


# "class" is a keyword, hence the functional form.
_OptimizerInfoBase = TypedDict(
    "_OptimizerInfoBase", {"name": str, "description": str, "package": str | None, "class": str}
)


class OptimizerInfo(_OptimizerInfoBase, total=False):
    settings: dict[str, Any]  # what the spec's defaults resolved to (TLR's K, p, γ, cap, rule); since /1


class _RunRecordRequired(TypedDict):
    format: str  # RECORD_FORMAT
    run_id: str
    config: dict[str, Any]  # RunConfig.to_dict()
    batch_size: int  # the one trained with (the workload's when the config gave None)
    workload: WorkloadInfo
    optimizer: OptimizerInfo
    data_source: str  # where the data came from, in words (data.origin.describe_origin), never a path
    n_train: int
    n_test: int
    n_params: int
    steps_per_epoch: int
    total_steps: int
    device: str
    environment: dict[str, Any]  # see environment()
    wall_time_s: float
    diverged: bool  # the runner stopped the run on a non-finite loss (outcome.outcome judges the rest)
    diverged_at_step: int | None
    step_loss: list[float]  # every training step's loss
    lr: list[list[float]]  # every step's effective rate, per param group
    evals: list[Evaluation]
    final: dict[str, float]  # the last evaluation's metrics ({} if there was none)


class RunRecord(_RunRecordRequired, total=False):
    """What ``runner.run`` returns and writes, one JSON object per run; keys added within a format version
    are optional, so that records written before them still load."""

    world_size: int
    # The files the loader checked against checksum files beside them (data_source then says so in words);
    # absent from records that kept the loader's path in data_source instead.
    data_checksums: list[str]
    optimizer_history: Any  # the optimizer's own log (TLR: its meta-steps), or None
    # Set by thin_record: step_loss and lr keep every ``stride``-th step of ``steps`` (steps 1, 1 + stride,
    # …), and ``last_epoch_loss`` is the mean step loss over the last epoch of the full curve.
    thinned: dict[str, Any]


class RecordError(ValueError):
    """A file that is not a run record this version can read; the message names the file and why."""


def _kind(annotation: Any) -> tuple[type, ...]:
    """The runtime types that a value annotated ``annotation`` may have (None: any)."""
    if annotation is Any:
        return (object,)
    if annotation is float:
        return (int, float)
    if is_typeddict(annotation):
        return (dict,)
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(t for arg in get_args(annotation) for t in _kind(arg))
    if annotation is type(None):
        return (type(None),)
    origin = get_origin(annotation)
    return (origin if origin is not None else annotation,)


def check_record(data: Any, source: str | os.PathLike = "<record>") -> RunRecord:
    """``data`` as a RunRecord, or RecordError naming ``source``: not an object, a format other than
    RECORD_FORMAT, a required key missing, or a key of the wrong type."""

    def refuse(why: str) -> RecordError:
        return RecordError(f"{source}: not a run record this version of ntlr-bench can read: {why}")

    if not isinstance(data, dict):
        raise refuse(f"a JSON {type(data).__name__}, not an object")
    fmt = data.get("format")
    if fmt != RECORD_FORMAT:
        if fmt is None:
            raise refuse(f"it has no 'format' (expected {RECORD_FORMAT!r})")
        raise refuse(f"format {fmt!r}, expected {RECORD_FORMAT!r}")
    hints = get_type_hints(RunRecord)
    missing = sorted(RunRecord.__required_keys__ - data.keys())
    if missing:
        raise refuse(f"missing {', '.join(missing)}")
    for key, annotation in hints.items():
        if key in data and not isinstance(data[key], _kind(annotation)):
            raise refuse(f"{key!r} is a {type(data[key]).__name__}, expected {annotation}")
    for key in ("workload", "optimizer"):
        absent = sorted(hints[key].__required_keys__ - data[key].keys())
        if absent:
            raise refuse(f"{key!r} lacks {', '.join(absent)}")
    return data  # type: ignore[return-value]


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    """``git args`` run in the library's folder (None where git cannot run)."""
    try:
        return subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _git_sha() -> str | None:
    out = _git("rev-parse", "HEAD")
    return None if out is None else out.stdout.strip() or None


def _git_dirty() -> bool | None:
    """Whether the library's checkout has uncommitted changes (None outside a git checkout)."""
    out = _git("status", "--porcelain", "--untracked-files=no")
    return None if out is None or out.returncode else bool(out.stdout.strip())


# The checkout as it was when this process imported the code: a sweep's worker runs the code it imported,
# and commits made while it runs (a long sweep beside a working session) must not relabel its records.
_CHECKOUT_AT_IMPORT: tuple[str | None, bool | None] = (_git_sha(), _git_dirty())


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo's "model name"; elsewhere what platform says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Versions and machine facts for the record. The processor and the vector instructions torch uses
    are among them because a run's last digits depend on them: the same commit, seed and thread count gave
    a final loss of 0.0546886 on the AMD EPYC machine of 2026-12-03 and 0.0546907 on the Intel Xeon
    (AVX512) one of 2026-12-04 (a digits run of the gauntlet)."""
    import torch

    import ntlr

    from . import __version__

    capability = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return {
        "ntlr": ntlr.__version__,
        "ntlr_bench": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_capability": capability() if capability is not None else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_sha": _CHECKOUT_AT_IMPORT[0],
        "git_dirty": _CHECKOUT_AT_IMPORT[1],
    }


def _umask() -> int:
    # The only portable way to read the umask is to set it; setting it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_record(record: RunRecord, path: str | os.PathLike) -> Path:
    """Write ``record`` as JSON so that ``path`` either holds the whole record or does not exist.

    A ``path`` ending in ``.gz`` is written gzip-compressed (compact JSON, no timestamp in the header, so
    the same record gives the same bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if path.suffix == ".gz":
            with os.fdopen(fd, "wb") as raw:
                with (
                    gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as z,
                    io.TextIOWrapper(z, encoding="utf-8") as f,
                ):
                    json.dump(record, f, allow_nan=True, separators=(",", ":"))
                raw.flush()
                os.fsync(raw.fileno())
        else:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, allow_nan=True)
                f.flush()
                os.fsync(f.fileno())
        # mkstemp creates the file 0600 whatever the umask: give the record the mode open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: str | os.PathLike) -> RunRecord:
    """The run record in ``path`` (gzip-compressed if it ends in ``.gz``); RecordError (naming the file) if
    it is not JSON or not a record."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rt") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise RecordError(f"{path}: not a run record: not valid JSON ({error})") from None
        except (gzip.BadGzipFile, EOFError) as error:
            raise RecordError(f"{path}: not a run record: not valid gzip ({error})") from None
    return check_record(data, path)


def thin_record(record: RunRecord, max_points: int = 500) -> RunRecord:
    """A copy of ``record`` whose per-step curves (``step_loss``, ``lr``) keep every k-th step, k the
    smallest stride that leaves at most ``max_points`` points; everything else (config, ``final``,
    ``evals``, ``optimizer_history``) is kept whole. The reports read the stride from ``thinned`` (see
    ``curve_steps``), and the outcome of the run (see ``outcome.final_train_loss``) from the full curve's
    last-epoch mean stored there, so a report from thinned records prints the same numbers.
    """
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive int, got {max_points!r}")
    from .outcome import last_epoch_loss

    out = dict(record)
    steps = len(record["step_loss"])
    stride = max(1, math.ceil(steps / max_points))
    if stride == 1 or "thinned" in record:
        return out  # type: ignore[return-value]
    out["thinned"] = {"stride": stride, "steps": steps, "last_epoch_loss": last_epoch_loss(record)}
    out["step_loss"] = record["step_loss"][::stride]
    out["lr"] = record["lr"][::stride]
    return out  # type: ignore[return-value]


def curve_steps(record: RunRecord, points: int) -> list[int]:
    """The step numbers (1-based) of the first ``points`` points of the record's ``step_loss``/``lr``."""
    stride = int((record.get("thinned") or {}).get("stride", 1))
    return [1 + i * stride for i in range(points)]
