"""Save / load feature-vector CBMs built by `linear_cbm` (what the CLI trains) with their groups.

A checkpoint is one torch file: {"config": {...}, "state_dict": ...}; the percentiles and the
temperature are buffers, so they are restored with the weights. Models with custom encoders
(e.g. timm) are saved with the usual `torch.save(model.state_dict())` and rebuilt by the caller.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .groups import ConceptGroups
from .model import ConceptBottleneckModel, linear_cbm


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or not an icbm checkpoint (the message names the path)."""


def save_checkpoint(
    model: ConceptBottleneckModel,
    path: str | Path,
    in_features: int,
    n_classes: int,
    hidden: int | None = None,
    extra: dict | None = None,
) -> Path:
    from paperworks_shared.files import atomic_torch_save

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
    atomic_torch_save({"config": config, "state_dict": model.state_dict()}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[ConceptBottleneckModel, dict]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file (expected a checkpoint written by `icbm train`)")
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # truncated zip, not a torch file, pickled code refused by weights_only
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({msg})") from None
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise CheckpointError(f"{path} is not an icbm checkpoint (no config / state_dict)")
    cfg = blob["config"]
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
        model.load_state_dict(blob["state_dict"])
    except KeyError as e:
        raise CheckpointError(f"{path}: the checkpoint config lacks {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: invalid checkpoint ({str(e).strip().splitlines()[0]})") from None
    model.eval()
    return model, cfg
