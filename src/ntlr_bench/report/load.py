"""Reading an experiment's run records from the folders a sweep or ``pack`` left them in."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..records import RECORD_PATTERNS, RecordError, RunRecord, read_record

__all__ = ["load_records"]


def load_records(dirs: Iterable[str | os.PathLike]) -> list[RunRecord]:
    """Every run record under ``dirs`` (shards merged; a run present twice counts once).

    Every ``.json`` file there, and every gzip-compressed ``.json.gz`` one (the records committed beside a
    report, see ``pack``), must be a record this version can read (see ``records.check_record``): one that
    is not raises RecordError naming it, rather than being left out of the report unnoticed.
    """
    found: dict[str, RunRecord] = {}
    for d in dirs:
        paths = {path for pattern in RECORD_PATTERNS for path in Path(d).rglob(pattern)}
        for path in sorted(paths):
            try:
                record = read_record(path)
            except OSError as error:
                raise RecordError(f"{path}: cannot read it ({error.strerror or error})") from None
            found.setdefault(record["run_id"], record)
    return list(found.values())
