"""Exceptions the package raises for bad files (the CLI turns them into one-line errors, exit 2).

`CheckpointError` is `paperworks_shared.checkpoint.CheckpointError` (one checkpoint format for every
package, issue 20.7), re-exported here so that ``early_readout.errors.CheckpointError`` keeps working.
"""

from __future__ import annotations

from paperworks_shared.checkpoint import CheckpointError

__all__ = ["CheckpointError", "first_line", "read_checkpoint"]


def first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def read_checkpoint(path, *, kind: str, map_location="cpu"):
    """`paperworks_shared.checkpoint.load_checkpoint`, plus: any other failure while reading the file
    (e.g. ``struct.error`` from a few junk bytes, which the shared loader lets through) becomes a
    `CheckpointError` naming the path, never a traceback."""
    from paperworks_shared.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path, kind=kind, map_location=map_location)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (truncated or another format): {first_line(e)}"
        ) from None
