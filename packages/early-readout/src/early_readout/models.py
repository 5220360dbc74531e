"""Teacher / student builders: small CNNs and MLPs with ResNet-style layer names, or any timm model.

Layer names mirror torchvision ResNets (``stem``, ``layer1``, ``layer2``, ``fc``) so the default
``readout_layer="layer1"`` means the same thing here as in the official code (DESIGN.md §1.3).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """stem (conv) -> layer1 (conv) -> layer2 (strided conv, 2x width) -> GAP -> fc."""

    def __init__(self, in_chans: int = 1, num_classes: int = 2, width: int = 16):
        super().__init__()
        self.num_classes = num_classes
        self.stem = _conv_block(in_chans, width)
        self.layer1 = _conv_block(width, width)
        self.layer2 = _conv_block(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(self.pool(x).flatten(1))


class MLP(nn.Module):
    """flatten -> layer1 (Linear+ReLU) -> ... -> layerK -> fc; ``hidden`` lists the widths."""

    def __init__(self, in_features: int, num_classes: int = 2, hidden: tuple[int, ...] = (32, 32)):
        super().__init__()
        if not hidden:
            raise ValueError("MLP needs at least one hidden layer (the readout taps layer1)")
        self.num_classes = num_classes
        self.flatten = nn.Flatten()
        d = in_features
        for i, h in enumerate(hidden, start=1):
            self.add_module(f"layer{i}", nn.Sequential(nn.Linear(d, h), nn.ReLU()))
            d = h
        self.depth = len(hidden)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):
        x = self.flatten(x)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(x)


BUILTIN: dict[str, tuple[str, Any]] = {
    "mlp-tiny": ("mlp", (32, 32)),
    "mlp-small": ("mlp", (64, 64)),
    "mlp-teacher": ("mlp", (256, 256, 256)),
    "cnn-tiny": ("cnn", 8),
    "cnn-small": ("cnn", 16),
    "cnn-teacher": ("cnn", 48),
}


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, pretrained: str | Path | None = None
) -> nn.Module:
    """A built-in model (``mlp-tiny``, ``mlp-small``, ``mlp-teacher``, ``cnn-tiny``, ``cnn-small``,
    ``cnn-teacher``) or a timm model name (created without downloading anything).

    ``pretrained``: a local file with backbone weights (a timm / torchvision ``.pth`` state dict, a
    training checkpoint wrapping one under ``state_dict`` / ``model`` with an optional ``module.``
    prefix, or a ``.safetensors`` file); see `load_pretrained`."""
    if name in BUILTIN:
        kind, arg = BUILTIN[name]
        model: nn.Module
        if kind == "mlp":
            model = MLP(math.prod(input_shape), num_classes, arg)
        else:
            model = SmallCNN(input_shape[0], num_classes, arg)
    else:
        import timm

        if not timm.is_model(name):
            raise ValueError(
                f"unknown model {name!r}: not a built-in ({', '.join(BUILTIN)}) nor a timm model name"
            )
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0])
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file: ``.safetensors``, or a torch file read with weights_only=True
    (a bare state dict or one wrapped under ``state_dict`` / ``model`` / ``model_state_dict``), with a
    DataParallel ``module.`` prefix removed. ValueError naming the path if it is none of these."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            sd = load_file(str(path))
        except Exception as e:
            raise ValueError(
                f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:200]})"
            ) from None
    else:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"{path}: not a readable torch weights file (weights_only=True): {msg}"
            ) from None
        for _ in range(2):  # e.g. {"state_dict": {...}} or {"model": {"state_dict": ...}}
            if isinstance(blob, dict) and not any(isinstance(v, torch.Tensor) for v in blob.values()):
                inner = next((blob[k] for k in _WRAPPER_KEYS if isinstance(blob.get(k), dict)), None)
                if inner is None:
                    break
                blob = inner
        if not isinstance(blob, dict) or not any(isinstance(v, torch.Tensor) for v in blob.values()):
            raise ValueError(f"{path}: holds no state dict of tensors")
        sd = {k: v for k, v in blob.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_pretrained(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load backbone weights from a local file into ``model`` (no download).

    Every tensor whose name and shape match is loaded; the classifier of an ImageNet checkpoint (another
    class count) is skipped and stays freshly initialised. Refuses (ValueError naming the path) a file
    that matches less than half of the model's backbone tensors: a checkpoint of another architecture.
    Returns ``{"loaded": [...], "skipped": [...]}``."""
    sd = read_state_dict(path)
    own = model.state_dict()
    loaded = [k for k, v in sd.items() if k in own and own[k].shape == v.shape]
    skipped = [k for k in sd if k not in loaded]
    head = {k for k in own if k.split(".")[0] in ("fc", "head", "classifier", "last_linear")}
    backbone = [k for k in own if k not in head and not k.endswith("num_batches_tracked")]
    hit = sum(1 for k in backbone if k in loaded)
    if not backbone or hit < len(backbone) / 2:
        raise ValueError(
            f"{path}: matches {hit} of the model's {len(backbone)} backbone tensors (another architecture?); "
            f"e.g. file keys {list(sd)[:3]}, model keys {backbone[:3]}"
        )
    model.load_state_dict({k: sd[k] for k in loaded}, strict=False)
    return {"loaded": loaded, "skipped": skipped}
