"""Plain-torch references the Triton kernels are tested against (same layouts, same rounding)."""

from __future__ import annotations

import torch

from ..adapters import rotate_half
from ..quant import QTensor, dequantize, quantize


def quantize_pack_ref(x: torch.Tensor, bits: int, group_size: int) -> QTensor:
    """Per-token quantize-and-pack of ``x [..., T, C]``."""
    return quantize(x, bits, group_size, "token")


def dequant_matmul_ref(
    q: QTensor,
    w: torch.Tensor,
    bias: torch.Tensor | None = None,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    head_dim: int | None = None,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """deq(q) @ w (+ bias), then RoPE per head of `head_dim` columns when `rope=(cos, sin)` [..., T, hd].

    Accumulates in fp32 (DESIGN.md pitfall 7).
    """
    y = dequantize(q, torch.float32) @ w.float()
    if bias is not None:
        y = y + bias.float()
    if rope is not None:
        if head_dim is None:
            raise ValueError("rope=(cos, sin) needs head_dim")
        cos, sin = (t.float() for t in rope)
        *lead, t, n = y.shape
        yh = y.reshape(*lead, t, n // head_dim, head_dim)
        yh = yh * cos[..., None, :] + rotate_half(yh) * sin[..., None, :]
        y = yh.reshape(*lead, t, n)
    return y.to(out_dtype)
