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


def save_checkpoint(
    model: ConceptBottleneckModel,
    path: str | Path,
    in_features: int,
    n_classes: int,
    hidden: int | None = None,
    extra: dict | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    torch.save({"config": config, "state_dict": model.state_dict()}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[ConceptBottleneckModel, dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    blob = torch.load(path, weights_only=True)
    cfg = blob["config"]
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
    model.eval()
    return model, cfg
