"""Reading an experiment's run records from the folders a sweep or ``pack`` left them in."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..records import RECORD_PATTERNS, RecordError, RunRecord, read_record

__all__ = ["load_records", "read_records"]


def read_records(dirs: Iterable[str | os.PathLike]) -> list[RunRecord]:
    """Every run record file under ``dirs``, each file once (folders in the order given, files in path
    order), duplicates of a run included.

    Every ``.json`` file there, and every gzip-compressed ``.json.gz`` one (the records committed beside a
    report, see ``pack``), must be a record this version can read (see ``records.check_record``): one that
    is not raises RecordError naming it, rather than being left out of the report unnoticed.
    """
    records: list[RunRecord] = []
    seen: set[Path] = set()
    for d in dirs:
        paths = {path for pattern in RECORD_PATTERNS for path in Path(d).rglob(pattern)}
        for path in sorted(paths):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            try:
                records.append(read_record(path))
            except OSError as error:
                raise RecordError(f"{path}: cannot read it ({error.strerror or error})") from None
    return records


def load_records(dirs: Iterable[str | os.PathLike]) -> list[RunRecord]:
    """Every run record under ``dirs`` (shards merged; a run present twice counts once): :func:`read_records`,
    the first record of each run id kept."""
    found: dict[str, RunRecord] = {}
    for record in read_records(dirs):
        found.setdefault(record["run_id"], record)
    return list(found.values())
