"""Errors that mean "there is no right answer here": never turned into a ranking."""

from __future__ import annotations


class BackendError(RuntimeError):
    """The judge / generation backend failed (connect, HTTP 4xx/5xx after retries, timeout, overflow)."""


class ProblemFailed(BackendError):
    """A problem could not be ranked because its judge calls failed (``on_backend_error="fail"``)."""


class BackendUnavailable(BackendError):
    """The run was stopped after too many consecutive backend failures (the server is gone)."""
