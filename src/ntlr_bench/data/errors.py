"""The data errors, in a module of their own that imports nothing: every loader module raises them.

A not-found message tells the reader how to point the bench at the data. A Python caller passes
``data_dir=``; a command-line user passes ``--data-dir`` or runs ``ntlr-bench download``. The error carries
both texts, and ``str()`` gives the command-line one inside ``cli_messages()`` (which the CLI enters).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DataError", "DataNotFoundError", "cli_messages"]

_CLI = False


class DataError(RuntimeError):
    """A data file exists but is wrong: checksum mismatch, truncated, malformed."""


class DataNotFoundError(FileNotFoundError):
    """A data set was not found; the message lists every place looked and how to get it."""

    def __init__(self, message: str, *, cli_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cli_message = message if cli_message is None else cli_message

    def __str__(self) -> str:
        return self.cli_message if _CLI else self.message


@contextmanager
def cli_messages() -> Iterator[None]:
    """Within the block, data errors read as instructions for a command-line user."""
    global _CLI
    previous, _CLI = _CLI, True
    try:
        yield
    finally:
        _CLI = previous
