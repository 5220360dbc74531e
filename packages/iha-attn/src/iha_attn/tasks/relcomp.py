"""Relation composition (paper App. D): a random m×m Boolean relation R flattened to m² tokens; per
position predict (R∘R)_{ij} (hops=2) or (R∘R∘R)_{ij} (hops=3). Bidirectional task, BCE loss."""

from __future__ import annotations

import torch


def relcomp_batch(m: int, batch_size: int, hops: int = 2, p: float = 0.325, generator=None):
    """(tokens [B, m²] in {0,1}, labels [B, m²] float). Default p follows the paper's binary task."""
    if hops not in (2, 3) or m < 2:
        raise ValueError("hops must be 2 or 3 and m >= 2")
    R = (torch.rand(batch_size, m, m, generator=generator) < p).float()
    out = R
    for _ in range(hops - 1):
        out = ((out @ R) > 0).float()
    return R.long().flatten(1), out.flatten(1)
