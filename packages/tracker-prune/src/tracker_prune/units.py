"""Gated (maskable) and slimmed versions of the prunable units.

Three unit types, following DESIGN.md §1.2-1.3:

* attention head-dims: one gate per (head, dim), shared by q, k and v (ViT-Slim / OSTrack
  ``SparseAttention``: ``qkv = qkv * zeta`` with zeta of shape (H, d));
* MLP hidden units: one gate per hidden unit, after the activation (``SparseMlp``);
* CNN channels: one gate per channel **after BatchNorm** (ChipNet style), so a pruned channel
  outputs exactly zero (no BN-beta leakage, DESIGN.md §1.3 / pitfall 4).

Every gated unit computes with the effective gate ``zeta * mask``. Slimming folds that gate into
the kept weights, so a slimmed unit equals the masked unit exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _check_identity(mod: nn.Module | None, what: str, owner: str) -> None:
    if mod is not None and not isinstance(mod, nn.Identity):
        raise TypeError(
            f"unsupported layer inside a prunable {owner}: {what} is {type(mod).__name__}, "
            "pruning it would not be exact (only Identity is supported)"
        )


class _Gated(nn.Module):
    """Shared gate logic: the effective gate is ``soft(zeta) * mask``.

    ``soft`` is None (the gate value is ``zeta`` itself, ViT-Slim) or a callable such as
    `tracker_prune.chipnet.ChipNetGates` mapping the raw parameter psi to ChipNet's soft gate.
    """

    # the wrapped timm / torch module is duck-typed (qkv / fc1 / ... attributes), hence Any
    inner: Any
    zeta: nn.Parameter
    mask: torch.Tensor
    soft: Callable[[torch.Tensor], torch.Tensor] | None = None
    unit_kind: str = ""

    def raw_gate(self) -> torch.Tensor:
        return self.zeta if self.soft is None else self.soft(self.zeta)

    def gate(self) -> torch.Tensor:
        return self.raw_gate() * self.mask.to(self.zeta.dtype)


class GatedAttention(_Gated):
    """A timm ``Attention`` with one gate per head-dim shared by q, k, v (DESIGN.md §1.2).

    The attention scale stays ``d ** -0.5`` of the *original* head dim (DESIGN.md pitfall 1).
    """

    unit_kind = "attn"

    def __init__(self, inner: Any):
        super().__init__()
        for attr in ("qkv", "proj", "num_heads", "head_dim", "scale"):
            if not hasattr(inner, attr):
                raise TypeError(f"attention module {type(inner).__name__} lacks {attr!r}")
        _check_identity(getattr(inner, "q_norm", None), "q_norm", "attention")
        _check_identity(getattr(inner, "k_norm", None), "k_norm", "attention")
        _check_identity(getattr(inner, "norm", None), "norm (scale_norm)", "attention")
        if getattr(inner, "gate", None) is not None:
            raise TypeError("unsupported layer inside a prunable attention: gated attention output")
        self.inner = inner
        H, d = inner.num_heads, inner.head_dim
        if inner.qkv.out_features != 3 * H * d:
            raise TypeError("attention qkv does not have the timm (3, H, d) layout")
        self.zeta = nn.Parameter(torch.ones(H, d))
        self.register_buffer("mask", torch.ones(H, d, dtype=torch.bool))

    def forward(self, x, attn_mask=None, is_causal: bool = False):
        a = self.inner
        B, N, _ = x.shape
        H, d = a.num_heads, a.head_dim
        qkv = a.qkv(x).reshape(B, N, 3, H, d) * self.gate().to(x.dtype)[None, None, None]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        drop = a.attn_drop.p if (self.training and hasattr(a, "attn_drop")) else 0.0
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=drop, is_causal=is_causal, scale=a.scale
        )
        y = y.transpose(1, 2).reshape(B, N, H * d)
        return a.proj_drop(a.proj(y)) if hasattr(a, "proj_drop") else a.proj(y)


class SlimAttention(nn.Module):
    """A physically smaller attention: ``num_heads`` kept heads, each padded to ``head_dim`` dims.

    Heads with uneven kept dims are zero-padded to the largest one (DESIGN.md §1.6): exact, and costs
    only the padding. ``scale`` is the original head dim's, never ``head_dim ** -0.5``.
    """

    def __init__(
        self, dim: int, num_heads: int, head_dim: int, scale: float, qkv_bias: bool, proj_bias: bool
    ):
        super().__init__()
        self.num_heads, self.head_dim, self.scale = num_heads, head_dim, float(scale)
        inner = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim, bias=proj_bias)

    def forward(self, x, attn_mask=None, is_causal: bool = False):
        B, N, _ = x.shape
        H, k = self.num_heads, self.head_dim
        if H * k == 0:  # emptied attention: only the proj bias survives
            return self.proj(x.new_zeros(B, N, 0))
        q, kk, v = self.qkv(x).reshape(B, N, 3, H, k).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(
            q, kk, v, attn_mask=attn_mask, is_causal=is_causal, scale=self.scale
        )
        return self.proj(y.transpose(1, 2).reshape(B, N, H * k))


def _is_pointwise_conv(mod: Any) -> bool:
    """A 1x1, stride-1, unpadded, ungrouped Conv2d: a Linear over the channel dim (ConvNeXt ``conv_mlp``)."""
    return (
        isinstance(mod, nn.Conv2d)
        and tuple(mod.kernel_size) == (1, 1)
        and tuple(mod.stride) == (1, 1)
        and tuple(mod.padding) == (0, 0)
        and tuple(mod.dilation) == (1, 1)
        and mod.groups == 1
        and mod.padding_mode == "zeros"
    )


class GatedMlp(_Gated):
    """A timm ``Mlp`` with one gate per hidden unit after the activation (DESIGN.md §1.2, pitfall 3).

    fc1/fc2 are ``nn.Linear`` (hidden units on the last dim) or both 1x1 ``nn.Conv2d`` (timm's
    ``Mlp(use_conv=True)``, used by ConvNeXt: hidden units on dim 1).
    """

    unit_kind = "mlp"

    def __init__(self, inner: Any):
        super().__init__()
        for attr in ("fc1", "act", "fc2"):
            if not hasattr(inner, attr):
                raise TypeError(f"MLP module {type(inner).__name__} lacks {attr!r}")
        linear = isinstance(inner.fc1, nn.Linear) and isinstance(inner.fc2, nn.Linear)
        conv = _is_pointwise_conv(inner.fc1) and _is_pointwise_conv(inner.fc2)
        if not (linear or conv):
            raise TypeError(
                f"unsupported layer inside a prunable MLP: fc1/fc2 are {type(inner.fc1).__name__}/"
                f"{type(inner.fc2).__name__}, only nn.Linear or 1x1 nn.Conv2d pairs are supported"
            )
        _check_identity(getattr(inner, "norm", None), "norm between act and fc2", "MLP")
        self.inner, self.conv = inner, conv
        width = inner.fc1.out_channels if conv else inner.fc1.out_features
        self.zeta = nn.Parameter(torch.ones(width))
        self.register_buffer("mask", torch.ones(width, dtype=torch.bool))

    def forward(self, x):
        m = self.inner
        g = self.gate().to(x.dtype)
        h = m.act(m.fc1(x)) * (g[None, :, None, None] if self.conv else g)
        h = m.drop1(h) if hasattr(m, "drop1") else h
        y = m.fc2(h)
        return m.drop2(y) if hasattr(m, "drop2") else y


class SlimMlp(nn.Module):
    """fc1 -> act -> fc2 with only the kept hidden units (``conv=True``: 1x1 convs, channels on dim 1)."""

    fc1: nn.Linear | nn.Conv2d
    fc2: nn.Linear | nn.Conv2d

    def __init__(
        self,
        dim_in: int,
        hidden: int,
        dim_out: int,
        act: nn.Module,
        bias1: bool,
        bias2: bool,
        conv: bool = False,
    ):
        super().__init__()
        self.conv = conv
        if conv:
            self.fc1 = nn.Conv2d(dim_in, hidden, 1, bias=bias1)
            self.fc2 = nn.Conv2d(hidden, dim_out, 1, bias=bias2)
        else:
            self.fc1 = nn.Linear(dim_in, hidden, bias=bias1)
            self.fc2 = nn.Linear(hidden, dim_out, bias=bias2)
        self.act = act

    def forward(self, x):
        if self.fc1.weight.shape[0] == 0:  # emptied MLP: only fc2's bias survives
            d_out, b = self.fc2.weight.shape[0], self.fc2.bias
            if self.conv:
                y = x.new_zeros(x.shape[0], d_out, *x.shape[2:])
                return y if b is None else y + b.to(x.dtype)[None, :, None, None]
            y = x.new_zeros(*x.shape[:-1], d_out)
            return y if b is None else y + b.to(x.dtype)
        return self.fc2(self.act(self.fc1(x)))


class GatedBatchNorm2d(_Gated):
    """BatchNorm2d followed by a per-channel gate (mask after BN: a pruned channel is exactly 0)."""

    unit_kind = "conv"
    bn: nn.BatchNorm2d

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        if not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"expected BatchNorm2d after a prunable conv, got {type(bn).__name__}")
        self.bn = bn
        self.zeta = nn.Parameter(torch.ones(bn.num_features))
        self.register_buffer("mask", torch.ones(bn.num_features, dtype=torch.bool))

    def forward(self, x):
        return self.bn(x) * self.gate().to(x.dtype)[None, :, None, None]


GATED_TYPES = (GatedAttention, GatedMlp, GatedBatchNorm2d)
