"""The auxiliary head that reads the sieve layer (DESIGN.md §1.3, `networks.py::ConvAux`).

* ``kind="conv"`` (official): ``depth`` ResNet BasicBlocks of ``width`` channels, the first one without
  the skip connection (channels change) and with a configurable ``stride``; then pooling and a Linear.
  At ``layer1`` of a 224-px ResNet-18 the official depth 2 / width 256 head costs ~6 GMAC, about 3x the
  whole backbone (DESIGN.md §5.1); use a small ``width`` / larger ``stride`` for cheap runs.
* ``kind="linear"``: pooling, then a Linear (the weakest head; best in the toy study, DESIGN.md §3.2).
* ``kind="mlp"``: pooling, ``depth`` hidden layers of ``width`` with ReLU, then a Linear.

Pooling of 4D features: ``"avg"`` (global average, official), ``"max"``, ``"flatten"`` (keeps position),
or ``"grid2"`` (2x2 adaptive average: coarse position). 3D token features (N, T, D) are mean-pooled
(``"avg"``) or use the first token (``"cls"``); 2D features are used as they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn

KINDS = ("conv", "linear", "mlp")
POOLS = ("avg", "max", "flatten", "grid2", "cls")


class BasicBlock(nn.Module):
    """ResNet BasicBlock; ``skip=False`` drops the residual (the official first aux block)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, skip: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = skip
        self.down: nn.Module | None
        if skip and (cin != cout or stride != 1):
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.down = None

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.skip:
            out = out + (x if self.down is None else self.down(x))
        return torch.relu(out)


class Pool(nn.Module):
    """Turns sieve-layer features of any rank into (N, D)."""

    def __init__(self, mode: str = "avg"):
        super().__init__()
        if mode not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {mode!r}")
        self.mode = mode

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() == 2:
            return h
        if h.dim() == 3:  # (N, T, D) tokens
            return h[:, 0] if self.mode == "cls" else h.mean(1)
        if h.dim() == 4:
            if self.mode == "avg":
                return h.mean((2, 3))
            if self.mode == "max":
                return h.amax((2, 3))
            if self.mode == "grid2":
                return nn.functional.adaptive_avg_pool2d(h, 2).flatten(1)
            if self.mode == "flatten":
                return h.flatten(1)
            raise ValueError("pool='cls' is for token features (N, T, D), not feature maps")
        raise ValueError(f"sieve features must be 2D, 3D or 4D; got shape {tuple(h.shape)}")


def pooled_dim(shape: tuple[int, ...], mode: str) -> int:
    """Feature size after `Pool(mode)` for one example of ``shape`` (without the batch dim)."""
    if len(shape) == 1:
        return shape[0]
    if len(shape) == 2:
        return shape[1]
    if mode == "flatten":
        return math.prod(shape)
    if mode == "grid2":
        return shape[0] * 4
    return shape[0]


class AuxHead(nn.Module):
    """Auxiliary classifier on the sieve layer's features; see the module docstring for the kinds.

    ``feature_shape`` is one example's feature shape, e.g. ``(64, 56, 56)`` or ``(768,)``.
    """

    def __init__(
        self,
        feature_shape: tuple[int, ...],
        num_classes: int,
        kind: str = "conv",
        depth: int = 2,
        width: int = 256,
        stride: int = 1,
        pool: str = "avg",
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"aux head kind must be one of {KINDS}, got {kind!r}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
        if int(depth) != depth or depth < 0:
            raise ValueError(f"aux depth must be a non-negative integer, got {depth!r}")
        shape = tuple(int(s) for s in feature_shape)
        self.kind, self.depth, self.width = kind, int(depth), int(width)
        self.body: nn.Module
        self.mlp: nn.Module
        if kind == "conv" and depth > 0:
            if len(shape) != 3:
                raise ValueError(f"a conv aux head needs (C, H, W) features; the sieve layer gives {shape}")
            blocks = [BasicBlock(shape[0], width, stride, skip=False)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            self.body = nn.Sequential(*blocks)
            with torch.no_grad():
                was = self.body.training
                self.body.eval()
                shape = tuple(self.body(torch.zeros(1, *feature_shape)).shape[1:])
                self.body.train(was)
        elif kind == "mlp" and depth > 0:
            self.body = nn.Identity()  # the MLP is built after pooling below
        else:
            self.body = nn.Identity()
        self.pool = Pool(pool)
        d = pooled_dim(shape, pool)
        if kind == "mlp" and depth > 0:
            layers: list[nn.Module] = []
            for _ in range(depth):
                layers += [nn.Linear(d, width), nn.ReLU()]
                d = width
            self.body = nn.Identity()
            self.mlp = nn.Sequential(*layers)
        else:
            self.mlp = nn.Identity()
        self.fc = nn.Linear(d, int(num_classes))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(self.mlp(self.pool(self.body(h))))
