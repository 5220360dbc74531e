"""Polynomial-filter regression (paper §4.2 / App. B.2; DESIGN.md §3.2 Experiment A).

Fixed random graph operator A (spectral radius ≈ 0.9); per sample X ∈ R^{N×c}; input X̂ = [X, I_N];
target [X, AX, …, A^{k−1}X]. One *linear* attention layer with H < k heads cannot realise k operators.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PolyFilterTask:
    n_nodes: int = 16
    channels: int = 2
    k: int = 4
    radius: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.n_nodes < 2 or self.channels < 1:
            raise ValueError("need k >= 1, n_nodes >= 2, channels >= 1")
        g = torch.Generator().manual_seed(self.seed)
        A = (torch.rand(self.n_nodes, self.n_nodes, generator=g) < 0.3).float()
        A = A + A.T
        A = A / torch.linalg.eigvalsh(A).abs().max().clamp_min(1e-6) * self.radius
        self.A = A

    @property
    def in_dim(self) -> int:
        return self.channels + self.n_nodes

    @property
    def out_dim(self) -> int:
        return self.k * self.channels

    def batch(self, batch_size: int, generator: torch.Generator | None = None):
        """(X̂ [B, N, c+N], target [B, N, k·c])."""
        X = torch.randn(batch_size, self.n_nodes, self.channels, generator=generator)
        eye = torch.eye(self.n_nodes).expand(batch_size, -1, -1)
        outs, cur = [], X
        for _ in range(self.k):
            outs.append(cur)
            cur = self.A @ cur
        return torch.cat([X, eye], -1), torch.cat(outs, -1)
