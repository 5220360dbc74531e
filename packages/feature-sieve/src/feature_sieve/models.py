"""Backbones: the small CNN used by the toy benchmark, and timm models by name.

DESIGN.md (§3.2, pitfall 10) explains why the toy uses a CNN rather than an MLP: the sieve assumes
that simple (spurious) features are computable by the lower layers and a small head while the core
feature is not. A 2x2 corner patch or a colour channel is visible to one 3x3 convolution; the digit's
identity is not, whereas an MLP's first layer sees the whole image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv1 (3x3) -> ReLU -> conv2 (3x3) -> ReLU -> flatten -> fc; sieve at ``conv1`` (or ``act1``).

    ``flatten`` keeps position (the patch shortcut is *where* a bright square sits) so the main
    network can read both the digit and the shortcut.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 16, image_hw=(8, 8)):
        super().__init__()
        h, w = image_hw
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.act2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * width * (h // 2) * (w // 2), num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.act2(self.conv2(self.act1(self.conv1(x))))).flatten(1))


class PretrainedError(ValueError):
    """A ``pretrained`` weights file that is missing, unreadable or does not fit the model."""


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    names = cfg.get("classifier") if isinstance(cfg, dict) else None
    if isinstance(names, str):
        names = (names,)
    return tuple(names or ("fc", "head", "classifier", "head.fc"))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a local weights file: ``.safetensors``, or a torch file holding a state dict (also
    the ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers of timm/torchvision training scripts, and a
    ``module.`` DataParallel prefix). Read with ``weights_only=True``; never downloads."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any decoding failure is the file's problem, reported by path
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise PretrainedError(f"{path}: not a readable weights file ({first})") from None
    for key in ("state_dict", "model", "model_state", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedError(f"{path}: holds no state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Copy the weights in ``path`` into ``model``; returns the classifier keys left at their fresh
    initialisation (a 1000-class head does not fit a 2-class model). Every other parameter and buffer
    must be present with the right shape, else `PretrainedError` lists what is missing or mismatched."""
    state = read_state_dict(path)
    own = model.state_dict()
    heads = _classifier_prefixes(model)

    def is_head(k: str) -> bool:
        return any(k == h or k.startswith(h + ".") for h in heads)

    skipped = [k for k, v in state.items() if is_head(k) and k in own and own[k].shape != v.shape]
    bad = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape and k not in skipped
    ]
    missing = [k for k in own if k not in state and not is_head(k) and not k.endswith("num_batches_tracked")]
    if bad or missing:
        parts = ([f"shape mismatch: {', '.join(bad[:5])}"] if bad else []) + (
            [f"missing {len(missing)} key(s), e.g. {', '.join(missing[:5])}"] if missing else []
        )
        raise PretrainedError(f"{path}: does not fit {type(model).__name__}: " + "; ".join(parts))
    fitting = {k: v for k, v in state.items() if k in own and k not in skipped}
    if not fitting:
        raise PretrainedError(f"{path}: none of its keys belong to {type(model).__name__}")
    model.load_state_dict(fitting, strict=False)
    return skipped


def build_model(
    name: str,
    in_channels: int,
    num_classes: int,
    image_hw=(8, 8),
    width: int = 16,
    pretrained: str | Path | None = None,
) -> nn.Module:
    """``"small_cnn"`` or any timm model name, randomly initialised or, with ``pretrained``, initialised
    from a local timm/torchvision checkpoint or safetensors file (`load_pretrained`; no downloads)."""
    model: nn.Module
    if name == "small_cnn":
        model = SmallCNN(in_channels, num_classes, width, image_hw)
    else:
        import timm

        if name not in timm.list_models():
            raise ValueError(
                f"unknown model {name!r}: use 'small_cnn' or a timm model name (timm.list_models())"
            )
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model
