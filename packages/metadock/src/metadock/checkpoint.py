"""Checkpoints in the one paperworks format (`paperworks_shared.checkpoint`), state dict + config.

`save(dock, DIR)` writes `DIR/checkpoint.pt` atomically with `save_checkpoint(kind="metadock")`: the
state dict of the MetaDOCK model and, as meta, the Conv4 / budget configuration plus a SHA-256 over
the state tensors (so a flipped byte inside a tensor is refused, not loaded). `load(DIR)` (or the file
itself) reads it with `weights_only=True` and raises `CheckpointError` naming the path for a missing,
truncated, foreign-kind or corrupt file. Folders written by older versions (`config.json` +
`model.pt`, format "metadock-checkpoint" v2) are still read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from paperworks_shared.checkpoint import CheckpointError as _SharedCheckpointError
from paperworks_shared.checkpoint import load_checkpoint, save_checkpoint

from .dock import MetaDOCK
from .models import Conv4

KIND = "metadock"
CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "metadock-checkpoint"  # the legacy folder format (config.json + model.pt), read only


class CheckpointError(_SharedCheckpointError):
    """A checkpoint is missing, incomplete, of another kind or corrupt (the message names the path)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict (sorted by name)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_replaceable(path: str | Path) -> Path:
    """Raise CheckpointError if `path` exists and is not a folder (a checkpoint --out is a folder).

    Other files in the folder are left alone: only `checkpoint.pt` is (atomically) replaced."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a folder; a checkpoint --out is a folder")
    return path


def save(dock: MetaDOCK, path: str | Path, extra: dict | None = None) -> Path:
    """Write `dock` to `path/checkpoint.pt` atomically; returns the folder `path`."""
    path = Path(path)
    if not isinstance(getattr(dock.net, "config", None), dict):
        raise ValueError(
            "only Conv4-based MetaDOCK models can be checkpointed by config; save dock.state_dict() yourself"
        )
    check_replaceable(path)
    state = {k: v.detach().cpu() for k, v in dock.state_dict().items()}
    cfg: dict[str, Any] = {
        "net": dock.net.config,
        "budget": dock.budget,
        "granularity": dock.granularity,
        "budget_weight": dock.schedule.weight,
        "budget_weight_schedule": dock.schedule.weight_schedule,
        "budget_schedule": dock.schedule.budget_schedule,
        "l1": dock.l1,
        **(extra or {}),
        "state_sha256": state_digest(state),
    }
    path.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path / CHECKPOINT_FILE, state, kind=KIND, meta=cfg)
    return path


def _build(cfg: dict, where: Path) -> MetaDOCK:
    try:
        return MetaDOCK(
            Conv4(**cfg["net"]),
            budget=cfg["budget"],
            granularity=cfg["granularity"],
            budget_weight=cfg["budget_weight"],
            budget_weight_schedule=cfg["budget_weight_schedule"],
            budget_schedule=cfg["budget_schedule"],
            l1=cfg["l1"],
        )
    except KeyError as e:
        raise CheckpointError(f"{where} lacks the configuration key {e}: corrupt checkpoint") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where} holds an invalid model configuration: {e}") from None


def _fill(dock: MetaDOCK, state: Any, where: Path) -> MetaDOCK:
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{where} does not hold a state dict: corrupt checkpoint")
    dtype = next((v.dtype for v in state.values() if v.is_floating_point()), None)
    if dtype is not None:
        dock.to(dtype)
    try:
        dock.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{where} does not match its configuration ({first})") from None
    return dock


def load(path: str | Path) -> tuple[MetaDOCK, dict]:
    """(dock, config) from a checkpoint folder (or its checkpoint.pt); CheckpointError otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if path.is_dir() and not (path / CHECKPOINT_FILE).exists() and (path / "config.json").exists():
        return _load_legacy(path)
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(
            f"{file} is missing: not a metadock checkpoint folder (expected {CHECKPOINT_FILE})"
        )
    try:
        state, cfg = load_checkpoint(file, kind=KIND)
    except _SharedCheckpointError as e:
        raise CheckpointError(str(e)) from None
    except Exception as e:  # the shared loader lets some torn files through (struct.error, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{file}: not a readable torch checkpoint (truncated or another format): {first}"
        ) from None
    digest = cfg.get("state_sha256")
    if not isinstance(digest, str):
        raise CheckpointError(f"{file}: the checkpoint lacks its state checksum: corrupt checkpoint")
    if not all(torch.is_tensor(v) for v in state.values()) or state_digest(state) != digest:
        raise CheckpointError(f"{file}: the weights do not match the checksum stored with them: corrupt")
    return _fill(_build(cfg, file), state, file), cfg


def _load_legacy(path: Path) -> tuple[MetaDOCK, dict]:
    """A folder written before the shared format: config.json + model.pt (v2 with a file checksum)."""
    for f in ("config.json", "model.pt"):
        if not (path / f).is_file():
            raise CheckpointError(f"{path / f} is missing: incomplete or not a metadock checkpoint folder")

    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path / 'config.json'} is not valid JSON ({e}): corrupt checkpoint") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path / 'config.json'} does not hold a JSON object: corrupt checkpoint")
    rec = cfg.get("model_pt")
    if cfg.get("format") == FORMAT:
        if not isinstance(rec, dict) or "sha256" not in rec:
            raise CheckpointError(f"{path / 'config.json'} lacks the model.pt checksum: corrupt checkpoint")
        size = (path / "model.pt").stat().st_size
        if size != rec.get("bytes") or _sha256(path / "model.pt") != rec["sha256"]:
            raise CheckpointError(
                f"{path / 'model.pt'} does not match the checksum recorded in config.json "
                f"({size} bytes, expected {rec.get('bytes')}): incomplete or corrupt checkpoint"
            )
    dock = _build(cfg, path / "config.json")
    try:
        state = torch.load(path / "model.pt", weights_only=True, map_location="cpu")
    except Exception as e:  # truncated zip, pickle error, not a torch file, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path / 'model.pt'} cannot be read ({msg}): corrupt checkpoint") from None
    return _fill(dock, state, path / "model.pt"), cfg
