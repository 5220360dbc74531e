"""Save / load feature-vector CBMs built by `linear_cbm` (what the CLI trains) with their groups.

One file in the shared paperworks format (`paperworks_shared.checkpoint`, kind "icbm"): the state dict
as `state` and the architecture / groups configuration as `meta`. The percentiles and the temperature
are buffers, so they are restored with the weights. Files of the older icbm format
(`{"config": ..., "state_dict": ...}`) are still read. Models with custom encoders (e.g. timm) are
saved with the usual `model.state_dict()` and rebuilt by the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from paperworks_shared.checkpoint import CheckpointError as _SharedCheckpointError
from paperworks_shared.checkpoint import load_checkpoint as _load_shared
from paperworks_shared.checkpoint import save_checkpoint as _save_shared

from .groups import ConceptGroups
from .model import ConceptBottleneckModel, linear_cbm

KIND = "icbm"
CHECKPOINT_FILE = "checkpoint.pt"  # the file `icbm train --out DIR` writes inside DIR


class CheckpointError(_SharedCheckpointError):
    """A checkpoint file is missing, truncated or not an icbm checkpoint (the message names the path)."""


def resolve(path: str | Path) -> Path:
    """A checkpoint folder (written by `icbm train --out DIR`) -> its checkpoint.pt; a file -> itself."""
    path = Path(path)
    return path / CHECKPOINT_FILE if path.is_dir() else path


def save_checkpoint(
    model: ConceptBottleneckModel,
    path: str | Path,
    in_features: int,
    n_classes: int,
    hidden: int | None = None,
    extra: dict | None = None,
) -> Path:

    path = Path(path)
    config = {
        "in_features": in_features,
        "n_classes": n_classes,
        "hidden": hidden,
        "mode": model.mode,
        "bottleneck": model.bottleneck,
        "intervention_format": model.intervention_format,
        "groups": model.groups.to_dict(),
        "extra": extra or {},
    }
    # temp file + fsync + rename: a crash never leaves a truncated checkpoint (or clobbers the old one)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return _save_shared(path, state, kind=KIND, meta=config)


def load_checkpoint(path: str | Path) -> tuple[ConceptBottleneckModel, dict]:
    """(model in eval mode, config) from a checkpoint file or a folder holding checkpoint.pt."""
    path = resolve(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file (expected a checkpoint written by `icbm train`)")
    try:
        state, cfg = _load_shared(path, kind=KIND)
    except _SharedCheckpointError as e:
        if "not a paperworks checkpoint" not in str(e):
            raise CheckpointError(str(e)) from None
        state, cfg = _load_legacy(path)
    except Exception as e:  # the shared loader lets some torn files through (struct.error, ...)
        raise CheckpointError(_unreadable(path, e)) from None
    return _build(path, state, cfg), cfg


def _unreadable(path: Path, e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"{path}: not a readable torch checkpoint (truncated or another format): {first}"


def _load_legacy(path: Path) -> tuple[Any, dict]:
    """The icbm format before the shared one: {"config": {...}, "state_dict": {...}}."""
    blob = torch.load(path, weights_only=True, map_location="cpu")  # readable: the shared loader read it
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        found = sorted(blob)[:8] if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{path} is not an icbm checkpoint (found {found})")
    return blob["state_dict"], blob["config"]


def _build(path: Path, state: Any, cfg: dict) -> ConceptBottleneckModel:
    try:
        groups = ConceptGroups.from_dict(cfg["groups"])
        model = linear_cbm(
            cfg["in_features"],
            groups,
            cfg["n_classes"],
            hidden=cfg["hidden"],
            mode=cfg["mode"],
            bottleneck=cfg["bottleneck"],
            intervention_format=cfg["intervention_format"],
        )
        model.load_state_dict(state)
    except KeyError as e:
        raise CheckpointError(f"{path}: the checkpoint config lacks {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: invalid checkpoint ({str(e).strip().splitlines()[0]})") from None
    model.eval()
    return model
