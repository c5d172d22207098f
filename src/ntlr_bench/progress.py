"""Progress bars that redraw on a terminal and stay quiet in a log file or CI.

Written to a file, every tqdm refresh is another line: a sweep of a few hundred runs left thousands of
them. Without a terminal (and outside a notebook, whose bars are widgets) a run's bar is not drawn at all,
and a sweep's bar, which can be the only sign of life in a long job's log, is redrawn at most once every
``quiet_interval_s`` seconds.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["progress_bar"]


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(
    total: int,
    *,
    desc: str,
    unit: str,
    leave: bool = True,
    quiet_interval_s: float | None = None,
    file: TextIO | None = None,
) -> Any:
    """A tqdm bar on ``file`` (default stderr), or None when tqdm is missing or there is nothing to draw on.

    Off a terminal: None, or with ``quiet_interval_s`` a bar that refreshes at most that often.
    """
    try:
        from tqdm.autonotebook import tqdm
    except ImportError:  # the bench extra brings tqdm; nothing needs it
        return None
    stream = sys.stderr if file is None else file
    options: dict[str, Any] = {"total": total, "desc": desc, "unit": unit, "leave": leave, "file": stream}
    in_notebook = tqdm.__module__ != "tqdm.std"
    if in_notebook or _is_terminal(stream):
        return tqdm(dynamic_ncols=True, **options)
    if quiet_interval_s is None:
        return None
    return tqdm(mininterval=quiet_interval_s, miniters=1, ncols=100, **options)
