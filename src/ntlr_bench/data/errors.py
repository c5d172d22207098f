"""The data errors, in a module of their own that imports nothing: every loader module raises them."""

from __future__ import annotations

__all__ = ["DataError", "DataNotFoundError"]


class DataError(RuntimeError):
    """A data file exists but is wrong: checksum mismatch, truncated, malformed."""


class DataNotFoundError(FileNotFoundError):
    """A data set was not found; the message lists every place looked and how to get it."""
