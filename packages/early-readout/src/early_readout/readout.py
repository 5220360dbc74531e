"""The early-readout head: a small classifier trained on the student's detached early features.

Official head (DESIGN.md §1.3, ``local_models.py::Projector``): a BasicBlock *without* the residual
connection (conv3x3-BN-ReLU-conv3x3-BN-ReLU, C -> 2C channels) -> global average pool -> Linear. The
official output size is hard-coded to 2; here it is ``num_classes``. ``kind="linear"`` (pool -> Linear)
and ``kind="mlp"`` (pool -> Linear-ReLU-Linear) are cheaper variants; ``"auto"`` picks the BasicBlock for
feature maps (B, C, H, W) and the linear head for vectors (B, C) or token sequences (B, T, C, mean-pooled
over T, an extension for text models; DESIGN.md §6.12).
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_KINDS = ("auto", "basicblock", "linear", "mlp")


def _pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> GAP; (B, T, C) -> mean over tokens; (B, C) -> as is."""
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 3:
        return x.mean(dim=1)
    if x.dim() == 2:
        return x
    raise ValueError(f"readout features must be 2-, 3- or 4-D, got shape {tuple(x.shape)}")


class ReadoutHead(nn.Module):
    """Early readout classifier; built lazily from the first features it sees (their channel count).

    ``reset_parameters()`` re-initialises it like the official ``Projector.refresh()``: Kaiming-normal
    (fan_out, relu) weights and zero biases on conv/linear layers; BN layers are reset too (a fresh head).
    """

    def __init__(self, num_classes: int, kind: str = "auto", width: int | None = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown readout head kind {kind!r}; choose one of {HEAD_KINDS}")
        self.num_classes = num_classes
        self.kind = kind
        self.width = width
        self.body: nn.Module | None = None
        self.fc: nn.Linear | None = None
        self.resolved_kind: str | None = None

    def build(self, feats: torch.Tensor) -> None:
        """Create the layers for features shaped like ``feats`` (called on the first batch)."""
        kind = self.kind
        if kind == "auto":
            kind = "basicblock" if feats.dim() == 4 else "linear"
        if kind == "basicblock" and feats.dim() != 4:
            raise ValueError(
                f"the basicblock readout needs (B, C, H, W) feature maps, got shape {tuple(feats.shape)}; "
                "use kind='linear' or 'mlp'"
            )
        c = feats.shape[1] if feats.dim() != 3 else feats.shape[2]
        # construct without touching the global RNG: only reset_parameters() draws, so a refresh costs the
        # same random draws whether or not the head was built before (exact checkpoint resumption)
        with torch.random.fork_rng(devices=[]):
            self._make_layers(kind, c)
        self.resolved_kind = kind
        self.to(device=feats.device)
        self.reset_parameters()

    def _make_layers(self, kind: str, c: int) -> None:
        if kind == "basicblock":
            w = self.width or 2 * c
            self.body = nn.Sequential(
                nn.Conv2d(c, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            )
            out = w
        elif kind == "mlp":
            w = self.width or 32
            self.body = nn.Sequential(nn.Linear(c, w), nn.ReLU(inplace=True))
            out = w
        else:
            self.body = nn.Identity()
            out = c
        self.fc = nn.Linear(out, self.num_classes)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
                m.reset_running_stats()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.fc is None:
            self.build(feats)
        fc, body = self.fc, self.body
        if fc is None or body is None:  # build() sets both; guards the Optional types
            raise RuntimeError("ReadoutHead.build did not create the head")
        if self.resolved_kind == "basicblock":
            return fc(_pool(body(feats)))
        return fc(body(_pool(feats)))
