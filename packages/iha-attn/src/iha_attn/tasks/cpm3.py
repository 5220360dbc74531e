"""CPM-3 counting task (paper §4.3): CPM_i(3) = |{(j1, j2) : (x_i + G·x_{j1} + x_{j2}) mod M = 0}|.

Order sensitivity needs G mod M ≠ 1 (DESIGN.md pitfall 13: the paper's "G > 2M" is not the right condition;
M = 5, G = 11 is symmetric). Defaults M = 7, G = 17 (≡ 3 mod 7).
"""

from __future__ import annotations

import torch


def cpm3_labels(x: torch.Tensor, M: int = 7, G: int = 17) -> torch.Tensor:
    """Brute-force labels for ``x [B, N]`` of integers -> counts ``[B, N]``."""
    if G % M == 1:
        raise ValueError(f"G={G} ≡ 1 (mod {M}) makes the predicate symmetric in (j1, j2); pick G mod M != 1")
    s = x[:, :, None, None] + G * x[:, None, :, None] + x[:, None, None, :]
    return ((s % M) == 0).sum(dim=(-1, -2))


def cpm3_batch(n: int, batch_size: int, M: int = 7, G: int = 17, generator=None):
    x = torch.randint(0, M, (batch_size, n), generator=generator)
    return x, cpm3_labels(x, M, G)
