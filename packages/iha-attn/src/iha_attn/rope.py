"""Rotary position embeddings at token or virtual positions (paper §4: "generating RoPE for length NP").

The rotate-half convention matches transformers' Llama, so a rotation here composes with one applied
there: rotating a token-position-rotated query by n·(P−1)+p lands it at the virtual position n·P+p.
"""

from __future__ import annotations

import torch


def inv_freq(dim: int, theta: float = 10000.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard RoPE inverse frequencies for an even ``dim`` (fp32, or fp64 for float64 models)."""
    if dim % 2:
        raise ValueError(f"RoPE needs an even head dim, got {dim}")
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=dtype, device=device) / dim))


def virtual_positions(positions: torch.Tensor, P: int) -> torch.Tensor:
    """Token positions ``[..., N]`` -> virtual positions ``[..., N·P]`` = n·P + p, token-major (paper §4)."""
    p = torch.arange(P, device=positions.device, dtype=positions.dtype)
    return (positions[..., :, None] * P + p).flatten(-2)


def cos_sin(positions: torch.Tensor, freqs: torch.Tensor, scaling: float = 1.0, dtype=torch.float32):
    """cos/sin tables ``[..., L, dim]`` for integer positions ``[..., L]`` (fp32; fp64 if asked)."""
    ang = positions[..., None].to(dtype) * freqs.to(device=positions.device, dtype=dtype)
    emb = torch.cat((ang, ang), dim=-1)
    return emb.cos() * scaling, emb.sin() * scaling


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, H, L, d]`` by tables ``[L, d]`` or ``[B, L, d]`` (broadcast over heads)."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    return (x * cos.to(x.dtype)) + (rotate_half(x) * sin.to(x.dtype))
