"""Backbones: the small CNN used by the toy benchmark, and timm models by name.

The notes (§3.2 (a), pitfall 10) explain why the toy uses a CNN rather than an MLP: the sieve assumes
that simple (spurious) features are computable by the lower layers and a small head while the core
feature is not. A 2x2 corner patch or a colour channel is visible to one 3x3 convolution; the digit's
identity is not, whereas an MLP's first layer sees the whole image.
"""

from __future__ import annotations

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


def build_model(name: str, in_channels: int, num_classes: int, image_hw=(8, 8), width: int = 16) -> nn.Module:
    """``"small_cnn"`` or any timm model name (randomly initialised; no downloads)."""
    if name == "small_cnn":
        return SmallCNN(in_channels, num_classes, width, image_hw)
    import timm

    if name not in timm.list_models():
        raise ValueError(f"unknown model {name!r}: use 'small_cnn' or a timm model name (timm.list_models())")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
