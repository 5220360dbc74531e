"""One checkpoint format for every package: a tagged dict written atomically, read with weights_only.

``{"format": "paperworks-checkpoint", "version": 1, "kind": <what it holds>, "meta": {...}, "state": {...}}``.
The kind tag stops a student checkpoint from being loaded as a teacher (or a tracker as a meta-learner);
`load_checkpoint` never unpickles arbitrary objects (``weights_only=True``) and names the file and the
problem when it refuses one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .files import atomic_torch_save

FORMAT = "paperworks-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of the expected kind (the message names the path)."""


def save_checkpoint(
    path: str | Path, state: dict[str, Any], *, kind: str, meta: dict[str, Any] | None = None
) -> Path:
    """Write `state` (tensors, numbers, strings, lists, dicts) tagged with `kind`; atomic (no torn file)."""
    if not kind or not isinstance(kind, str):
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, "meta": dict(meta or {}), "state": state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(payload, path)
    return path


def load_checkpoint(
    path: str | Path, *, kind: str, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, meta)`` of a checkpoint written by `save_checkpoint` with the same `kind`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - junk bytes raise anything from IndexError to UnpicklingError
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (truncated or another format): {first}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: not a paperworks checkpoint (found {found}); expected a file from save_checkpoint"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('version')!r}, this code reads {VERSION}"
        )
    if payload.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {payload.get('kind')!r} checkpoint, expected {kind!r}")
    state = payload.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint has no state dict")
    return state, dict(payload.get("meta") or {})
