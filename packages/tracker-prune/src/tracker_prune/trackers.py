"""Tiny from-scratch trackers: Siamese CNN (depthwise xcorr), one-stream ViT (timm blocks), hybrid.

All take a template crop (B,3,T,T) and a search crop (B,3,S,S) and return a dict with
``score`` (B,G*G logits over a G x G grid on the search crop) and ``box`` (B,G*G,4): per cell the
predicted (cx, cy, w, h) in search-crop pixels. ``config`` holds the constructor kwargs (used by
`tracker_prune.io` to rebuild an architecture).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ResBlock(nn.Module):
    """conv1-bn1-relu-conv2-bn2 + identity; only bn1's channels are internal (prunable)."""

    prunable_pairs = (("conv1", "bn1", "conv2"),)

    def __init__(self, c: int, hidden: int | None = None):
        super().__init__()
        h = hidden or c
        self.conv1, self.bn1 = nn.Conv2d(c, h, 3, 1, 1, bias=False), nn.BatchNorm2d(h)
        self.conv2, self.bn2 = nn.Conv2d(h, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class CenterHead(nn.Module):
    """conv3x3-bn-relu-conv1x1 -> (score, size, offset); the hidden channels are prunable."""

    prunable_pairs = (("conv1", "bn1", "conv2"),)

    def __init__(self, cin: int, hidden: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, hidden, 3, 1, 1, bias=False), nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, 5, 1)

    def forward(self, feat: torch.Tensor, search_size: int) -> dict:
        out = self.conv2(F.relu(self.bn1(self.conv1(feat))))
        B, _, G, _ = out.shape
        cell = search_size / G
        ys, xs = torch.meshgrid(
            torch.arange(G, dtype=out.dtype), torch.arange(G, dtype=out.dtype), indexing="ij"
        )
        cx = (xs.flatten()[None] + torch.sigmoid(out[:, 3].flatten(1))) * cell
        cy = (ys.flatten()[None] + torch.sigmoid(out[:, 4].flatten(1))) * cell
        wh = torch.sigmoid(out[:, 1:3].flatten(2)) * search_size
        box = torch.stack([cx, cy, wh[:, 0], wh[:, 1]], -1)
        return {"score": out[:, 0].flatten(1), "box": box}


def _inner(mod: nn.Module) -> nn.Module:
    """The timm module behind a gated wrapper (or the module itself)."""
    return getattr(mod, "inner", mod)


def _stage_group(entry: nn.Sequential, blocks: list, reader: nn.Conv2d) -> dict:
    """Residual group of a CNN stage: ConvBNAct entry, its ResBlocks, and the next reader conv."""
    bn = entry[1]
    return dict(
        mask_out=[bn] + [b.bn2 for b in blocks],  # mask after BN: masked channels are exactly 0
        slice_out=[entry[0], bn] + [m for b in blocks for m in (b.conv2, b.bn2)],
        slice_in=[b.conv1 for b in blocks] + [reader],
    )


def _embed_group(model) -> dict:
    """The ViT embed dim: token input to the blocks, proj / fc2 outputs, LayerNorms, qkv / fc1 / head inputs."""
    blocks = list(model.blocks)
    attns = [_inner(b.attn) for b in blocks]
    mlps = [_inner(b.mlp) for b in blocks]
    patch = model.patch if isinstance(model.patch, nn.Conv2d) else model.patch[-1]
    for b in blocks:
        for extra in ("ls1", "ls2"):
            if not isinstance(getattr(b, extra, nn.Identity()), nn.Identity):
                raise TypeError(f"unsupported layer in the residual stream: {extra} is not Identity")
    return dict(
        mask_in=[model.blocks],
        mask_out=[a.proj for a in attns] + [m.fc2 for m in mlps],
        norms=[n for b in blocks for n in (b.norm1, b.norm2)] + [model.norm],
        slice_out=[patch] + [a.proj for a in attns] + [m.fc2 for m in mlps],
        slice_in=[a.qkv for a in attns] + [m.fc1 for m in mlps] + [model.head.conv1],
        slice_params=[(model, "pos_z", 2), (model, "pos_x", 2)],
    )


class SiameseCNNTracker(nn.Module):
    """Shared CNN backbone (stride 4, residual blocks), depthwise cross-correlation, center head."""

    def __init__(
        self, widths=(16, 32), head_hidden: int = 32, template_size: int = 32, search_size: int = 64
    ):
        super().__init__()
        self.config = dict(
            widths=tuple(widths),
            head_hidden=head_hidden,
            template_size=template_size,
            search_size=search_size,
        )
        w0, w1 = widths
        self.backbone = nn.Sequential(ConvBNAct(3, w0, 2), ResBlock(w0), ConvBNAct(w0, w1, 2), ResBlock(w1))
        self.head = CenterHead(w1, head_hidden)
        self.search_size = search_size

    def residual_groups(self):
        """(name, width, spec) per residual channel group, for ``Pruner(group_residual=True)``."""
        bb = self.backbone
        return [
            ("stage0", bb[0][1].num_features, _stage_group(bb[0], [bb[1]], bb[2][0])),
            ("stage1", bb[2][1].num_features, _stage_group(bb[2], [bb[3]], self.head.conv1)),
        ]

    def forward(self, template, search):
        z, x = self.backbone(template), self.backbone(search)
        B, C, kh, kw = z.shape
        xc = F.conv2d(
            x.reshape(1, B * C, *x.shape[-2:]),
            z.reshape(B * C, 1, kh, kw),
            padding=(kh // 2, kw // 2),
            groups=B * C,
        )
        G = x.shape[-1]
        xc = xc.reshape(B, C, *xc.shape[-2:])[..., :G, :G] / (kh * kw)
        return self.head(xc, self.search_size)


class OneStreamViTTracker(nn.Module):
    """OSTrack-style one-stream ViT: template + search tokens through timm Blocks, head on search."""

    def __init__(
        self,
        embed_dim: int = 48,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        patch_size: int = 8,
        head_hidden: int = 32,
        template_size: int = 32,
        search_size: int = 64,
    ):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.config = dict(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            head_hidden=head_hidden,
            template_size=template_size,
            search_size=search_size,
        )
        self.patch: nn.Module = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.nz, self.nx = (template_size // patch_size) ** 2, (search_size // patch_size) ** 2
        self.pos_z = nn.Parameter(torch.randn(1, self.nz, embed_dim) * 0.02)
        self.pos_x = nn.Parameter(torch.randn(1, self.nx, embed_dim) * 0.02)
        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = CenterHead(embed_dim, head_hidden)
        self.search_size = search_size

    def residual_groups(self):
        """(name, width, spec): the embed dim as one group (``Pruner(group_residual=True)``)."""
        return [("embed", self.norm.normalized_shape[0], _embed_group(self))]

    def tokens(self, template, search):
        z = self.patch(template).flatten(2).transpose(1, 2) + self.pos_z
        x = self.patch(search).flatten(2).transpose(1, 2) + self.pos_x
        return torch.cat([z, x], 1)

    def forward(self, template, search):
        t = self.norm(self.blocks(self.tokens(template, search)))[:, self.nz :]
        G = int(self.nx**0.5)
        return self.head(t.transpose(1, 2).reshape(t.shape[0], -1, G, G), self.search_size)


class HybridTracker(OneStreamViTTracker):
    """CNN stem (stride 8, one residual block) feeding timm transformer blocks (mini-STARK-like)."""

    def __init__(
        self,
        embed_dim: int = 48,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        stem_width: int = 24,
        head_hidden: int = 32,
        template_size: int = 32,
        search_size: int = 64,
    ):
        super().__init__(embed_dim, depth, num_heads, mlp_ratio, 8, head_hidden, template_size, search_size)
        self.config = dict(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            stem_width=stem_width,
            head_hidden=head_hidden,
            template_size=template_size,
            search_size=search_size,
        )
        self.patch = nn.Sequential(
            ConvBNAct(3, stem_width, 2),
            ResBlock(stem_width),
            ConvBNAct(stem_width, stem_width, 2),
            nn.Conv2d(stem_width, embed_dim, 2, 2),
        )

    def residual_groups(self):
        """The embed dim plus the CNN stem's residual stage (its ResBlock's stream)."""
        p = self.patch
        return super().residual_groups() + [
            ("stem", p[0][1].num_features, _stage_group(p[0], [p[1]], p[2][0]))
        ]


TRACKERS = {"cnn": SiameseCNNTracker, "vit": OneStreamViTTracker, "hybrid": HybridTracker}


def build_tracker(arch: str, **kwargs) -> nn.Module:
    if arch not in TRACKERS:
        raise ValueError(f"unknown tracker {arch!r}; choose one of {sorted(TRACKERS)}")
    return TRACKERS[arch](**kwargs)
