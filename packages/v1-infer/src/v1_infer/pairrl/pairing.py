"""Verification pairs for PairRL (paper §5: only pairs with at least one correct solution, never I-I)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def make_verification_pairs(
    correct: Sequence[bool],
    k: int = 4,
    *,
    allow_cc: bool = True,
    randomize_slots: bool = True,
    rng: np.random.Generator | None = None,
) -> list[tuple[int, int]]:
    """Up to ``k`` pairs (a, b) of solver rollouts for judge prompts: eligible = C-I (and C-C when
    ``allow_cc``); sampled without replacement and truncated (DESIGN.md §6.15 default); slot order
    randomised. Returns [] when no rollout is correct."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    rng = rng or np.random.default_rng(0)
    y = [bool(c) for c in correct]
    eligible = [
        (i, j)
        for i in range(len(y))
        for j in range(i + 1, len(y))
        if (y[i] or y[j]) and (allow_cc or y[i] != y[j])
    ]
    if not eligible:
        return []
    pick = rng.permutation(len(eligible))[:k]
    out = []
    for p in pick:
        i, j = eligible[int(p)]
        if randomize_slots and rng.random() < 0.5:
            i, j = j, i
        out.append((i, j))
    return out
