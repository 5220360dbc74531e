"""Checkpoints as state_dict + JSON config (never pickled trainer objects, which break across versions).

A checkpoint is a folder published atomically (built in a private staging folder, then renamed into
place): it either holds a complete `model.pt` + `config.json` or does not exist. `config.json` records
the SHA-256 and size of `model.pt`; `load` refuses a folder whose files are missing, truncated or do
not match, and loads weights with `torch.load(weights_only=True)` (no pickled code is run).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from paperworks_shared.files import publish_dir

from .dock import MetaDOCK
from .models import Conv4

FORMAT = "metadock-checkpoint"
VERSION = 2
_OWN_FILES = {"config.json", "model.pt"}


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or corrupt (the message names the path)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_replaceable(path: str | Path) -> Path:
    """Raise CheckpointError unless `path` is absent, an empty folder, or a metadock checkpoint folder
    (only those are replaced by `save`: never a folder holding anything else)."""
    path = Path(path)
    if not path.exists():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a folder; a checkpoint is a folder")
    other = sorted(p.name for p in path.iterdir() if p.name not in _OWN_FILES)
    if other:
        raise CheckpointError(
            f"{path} exists and holds files that are not part of a metadock checkpoint "
            f"({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}); refusing to replace it"
        )
    return path


def save(dock: MetaDOCK, path: str | Path, extra: dict | None = None) -> Path:
    """Write `dock` to the folder `path` atomically (an existing checkpoint folder there is replaced)."""
    path = Path(path)
    if not isinstance(getattr(dock.net, "config", None), dict):
        raise ValueError(
            "only Conv4-based MetaDOCK models can be checkpointed by config; save dock.state_dict() yourself"
        )
    check_replaceable(path)
    cfg = {
        "format": FORMAT,
        "version": VERSION,
        "net": dock.net.config,
        "budget": dock.budget,
        "granularity": dock.granularity,
        "budget_weight": dock.schedule.weight,
        "budget_weight_schedule": dock.schedule.weight_schedule,
        "budget_schedule": dock.schedule.budget_schedule,
        "l1": dock.l1,
        **(extra or {}),
    }
    state = {k: v.detach().cpu() for k, v in dock.state_dict().items()}

    def build(staging: Path) -> None:
        from paperworks_shared.files import strict_json

        torch.save(state, staging / "model.pt")
        cfg["model_pt"] = {
            "sha256": _sha256(staging / "model.pt"),
            "bytes": (staging / "model.pt").stat().st_size,
        }
        (staging / "config.json").write_text(strict_json(cfg) + "\n")

    return publish_dir(build, path)


def load(path: str | Path) -> tuple[MetaDOCK, dict]:
    """(dock, config) from a checkpoint folder; CheckpointError naming the problem otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint folder (expected config.json + model.pt)")
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
    # (folders written before version 2 have no checksum: the strict weights-only load below and the
    # exact state-dict match still refuse a truncated or mismatched model.pt)
    try:
        dock = MetaDOCK(
            Conv4(**cfg["net"]),
            budget=cfg["budget"],
            granularity=cfg["granularity"],
            budget_weight=cfg["budget_weight"],
            budget_weight_schedule=cfg["budget_weight_schedule"],
            budget_schedule=cfg["budget_schedule"],
            l1=cfg["l1"],
        )
    except KeyError as e:
        raise CheckpointError(f"{path / 'config.json'} lacks the key {e}: corrupt checkpoint") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path / 'config.json'} holds an invalid model configuration: {e}") from None
    try:
        state = torch.load(path / "model.pt", weights_only=True, map_location="cpu")
    except Exception as e:  # truncated zip, pickle error, not a torch file, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path / 'model.pt'} cannot be read ({msg}): corrupt checkpoint") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path / 'model.pt'} does not hold a state dict: corrupt checkpoint")
    dtype = next((v.dtype for v in state.values() if v.is_floating_point()), None)
    if dtype is not None:
        dock.to(dtype)
    try:
        dock.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path / 'model.pt'} does not match config.json ({first})") from None
    return dock, cfg
