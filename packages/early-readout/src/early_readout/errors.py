"""Exceptions the package raises for bad files (the CLI turns them into one-line errors, exit 2)."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint or weights file that is missing, unreadable, unsafe to unpickle or from another run."""


def first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
