"""Run configurations and self-describing run records, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunConfig", "environment", "read_record", "write_record"]


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


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    """Versions and machine facts for the record."""
    import torch

    import ntlr

    from . import __version__

    return {
        "ntlr": ntlr.__version__,
        "ntlr_bench": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_sha": _git_sha(),
    }


def write_record(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``record`` as JSON so that ``path`` either holds the whole record or does not exist."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)
