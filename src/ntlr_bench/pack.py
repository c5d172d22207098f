"""The records behind a committed report, committed beside it: compressed, with thinned curves.

``ntlr-bench pack <experiment>`` writes the experiment's records from ``runs/`` (see ``ntlr-bench sweep``)
into ``docs/experiments/<experiment>/records/`` as ``<run_id>.json.gz``, each curve kept at every k-th
step so that it has at most ``max_points`` points (``records.thin_record``: config, ``final``, ``evals``
and the optimizer's history are kept whole). ``ntlr-bench report <experiment> --records
docs/experiments/<experiment>/records`` then regenerates the report on a fresh clone without training,
with the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .records import RunRecord, thin_record, write_record

__all__ = ["DOCS_EXPERIMENTS", "MAX_POINTS", "pack_records", "records_dir"]

DOCS_EXPERIMENTS = Path("docs") / "experiments"
MAX_POINTS = 500


def records_dir(experiment: str, docs: str | os.PathLike = DOCS_EXPERIMENTS) -> Path:
    """Where the records behind ``experiment``'s committed report live."""
    return Path(docs) / experiment / "records"


def pack_records(
    records: Iterable[RunRecord], dest: str | os.PathLike, *, max_points: int = MAX_POINTS
) -> list[Path]:
    """Write ``records`` thinned and gzip-compressed into ``dest`` as ``<run_id>.json.gz``; return the paths.

    ``dest`` ends up holding exactly these records: a ``.json.gz`` there from an earlier pack that is not
    among them (a run since dropped from the grid) is removed, so the folder always matches its report.
    """
    dest = Path(dest)
    written = []
    for record in sorted(records, key=lambda r: r["run_id"]):
        written.append(write_record(thin_record(record, max_points), dest / f"{record['run_id']}.json.gz"))
    keep = {path.name for path in written}
    for stale in dest.glob("*.json.gz"):
        if stale.name not in keep:
            stale.unlink()
    return written
