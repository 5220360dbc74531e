"""Teacher / student builders: small CNNs and MLPs with ResNet-style layer names, or any timm model.

Layer names mirror torchvision ResNets (``stem``, ``layer1``, ``layer2``, ``fc``) so the default
``readout_layer="layer1"`` means the same thing here as in the official code (notes §1.3).
"""

from __future__ import annotations

import math

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


BUILTIN = {
    "mlp-tiny": ("mlp", (32, 32)),
    "mlp-small": ("mlp", (64, 64)),
    "mlp-teacher": ("mlp", (256, 256, 256)),
    "cnn-tiny": ("cnn", 8),
    "cnn-small": ("cnn", 16),
    "cnn-teacher": ("cnn", 48),
}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A built-in model (``mlp-tiny``, ``mlp-small``, ``mlp-teacher``, ``cnn-tiny``, ``cnn-small``,
    ``cnn-teacher``) or a timm model name (created without pretrained weights: no downloads)."""
    if name in BUILTIN:
        kind, arg = BUILTIN[name]
        if kind == "mlp":
            return MLP(math.prod(input_shape), num_classes, arg)
        return SmallCNN(input_shape[0], num_classes, arg)
    import timm

    if not timm.is_model(name):
        raise ValueError(
            f"unknown model {name!r}: not a built-in ({', '.join(BUILTIN)}) nor a timm model name"
        )
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0])
