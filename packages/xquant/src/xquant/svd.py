"""Offline SVD latents for GQA models (paper §3.3, notes §1.5/§1.6).

W (math convention, X·W) = U Σ Bᵀ. XQuant-GQA caches X·U (without Σ, paper §3.3.1) and
rematerializes K = (X·U)·M with M = Σ Bᵀ. XQuant-CL on GQA uses U_kv from the SVD of [W_k | W_v] and
reconstructs X̂_i = X̂_{i-1} + Q(ΔX_i U_kv) U_kvᵀ, exact on K/V when Q is the identity because W_kv
only sees its column space. Computed in float64 (notes pitfall 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Latent:
    u: torch.Tensor  # [d, r] orthonormal columns
    m: torch.Tensor  # [r, n] = Σ Bᵀ, so that W = U M

    @property
    def rank(self) -> int:
        return self.u.shape[1]

    def tensors(self) -> list[torch.Tensor]:
        return [self.u, self.m]


def latent_factors(w: torch.Tensor, dtype: torch.dtype, check: bool = True) -> Latent:
    """Thin SVD of `w` [d, n] (math convention) in float64 -> (U, M) in `dtype`; verifies U M == W."""
    w64 = w.detach().to(torch.float64)
    u, s, vh = torch.linalg.svd(w64, full_matrices=False)
    m = s[:, None] * vh
    if check:
        err = (u @ m - w64).abs().max().item()
        scale = w64.abs().max().item() or 1.0
        if err > 1e-9 * max(1.0, scale) * max(w.shape):
            raise RuntimeError(f"SVD reconstruction error {err:.3g} too large")
    return Latent(u.to(dtype), m.to(dtype))
