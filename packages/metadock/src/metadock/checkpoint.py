"""Checkpoints as state_dict + JSON config (never pickled trainer objects, which break across versions)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .dock import MetaDOCK
from .models import Conv4


def save(dock: MetaDOCK, path: str | Path, extra: dict | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if not isinstance(getattr(dock.net, "config", None), dict):
        raise ValueError(
            "only Conv4-based MetaDOCK models can be checkpointed by config; save dock.state_dict() yourself"
        )
    cfg = {
        "net": dock.net.config,
        "budget": dock.budget,
        "granularity": dock.granularity,
        "budget_weight": dock.schedule.weight,
        "budget_weight_schedule": dock.schedule.weight_schedule,
        "budget_schedule": dock.schedule.budget_schedule,
        "l1": dock.l1,
        **(extra or {}),
    }
    (path / "config.json").write_text(json.dumps(cfg, indent=1))
    torch.save(dock.state_dict(), path / "model.pt")
    return path


def load(path: str | Path) -> tuple[MetaDOCK, dict]:
    path = Path(path)
    for f in ("config.json", "model.pt"):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path / f} is missing: not a metadock checkpoint folder")
    cfg = json.loads((path / "config.json").read_text())
    dock = MetaDOCK(
        Conv4(**cfg["net"]),
        budget=cfg["budget"],
        granularity=cfg["granularity"],
        budget_weight=cfg["budget_weight"],
        budget_weight_schedule=cfg["budget_weight_schedule"],
        budget_schedule=cfg["budget_schedule"],
        l1=cfg["l1"],
    )
    dock.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    return dock, cfg
