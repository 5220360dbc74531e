"""Pair scheduling of V1-Infer (paper Alg. 1, 2, 4 and App. D; details from the code mirror).

Pure functions of the tournament state: each returns one round of *disjoint* pairs (i, j), with i the
node that goes into slot A (the coverage needer / the higher-ranked Swiss node).
"""

from __future__ import annotations

import numpy as np

from .aggregation import WinRateStats


def random_matching(n: int, rng: np.random.Generator, max_pairs: int) -> list[tuple[int, int]]:
    """Round 0: a random perfect matching (odd N leaves one node out), truncated to ``max_pairs``.

    In the code and the text ("random disjoint pairings to guarantee global connectivity") but missing
    from Alg. 1 (DESIGN.md §6.4).
    """
    idx = rng.permutation(n)
    pairs = [(int(idx[k]), int(idx[k + 1])) for k in range(0, n - 1, 2)]
    return pairs[: max(max_pairs, 0)]


def coverage_pairs(
    stats: WinRateStats, min_degree: int, satisfied: set[int], max_pairs: int
) -> list[tuple[int, int]]:
    """Phase 1, min-degree coverage (Alg. 2): pair each under-compared node with the closest-µ unseen,
    free opponent (ties by the opponent's degree, then index).

    A needer with no unseen free partner is added to ``satisfied`` (mutated), the code's infinite-loop
    guard (DESIGN.md §6.5).
    """
    n = stats.n
    deg = stats.degree.tolist()
    mu = stats.mu.tolist()
    seen = (stats.counts > 0).tolist()
    needers = [i for i in range(n) if deg[i] < min_degree and i not in satisfied]
    needers.sort(key=lambda i: (deg[i], i))
    batch: list[tuple[int, int]] = []
    used: set[int] = set()
    for i in needers:
        if i in used or len(batch) >= max_pairs:
            continue
        cands = [j for j in range(n) if j != i and j not in used and not seen[i][j]]
        if not cands:
            # code behaviour (`degrees[i] = d_min`): no unseen *free* partner -> marked satisfied for good
            satisfied.add(i)
            continue
        j = min(cands, key=lambda j: (abs(mu[i] - mu[j]), deg[j], j))
        batch.append((i, j))
        used.update((i, j))
    return batch


def swiss_pairs(
    stats: WinRateStats, window: int, key: str, max_pairs: int, order: list[int]
) -> list[tuple[int, int]]:
    """Phase 2, Swiss refinement (Alg. 4): walk the current ranking ``order`` and pair each free node with
    a free node among the next ``window`` ranks.

    Partner key: "unseen_first" (code: unseen, |µ gap|, pair count) or "gap_first" (paper: |µ gap|,
    seen, index). Repeated pairs are allowed once every partner in the window has been seen. The round
    is truncated to ``max_pairs`` (the last, lowest-ranked pairs are dropped, DESIGN.md §6.6).
    """
    n = stats.n
    mu = stats.mu.tolist()
    seen = (stats.counts > 0).tolist()
    counts = stats.counts.tolist()
    batch: list[tuple[int, int]] = []
    used: set[int] = set()
    for k in range(n):
        i = order[k]
        if i in used:
            continue
        cands = [order[t] for t in range(k + 1, min(k + window, n - 1) + 1) if order[t] not in used]
        if not cands:
            continue
        if key == "unseen_first":
            j = min(cands, key=lambda j: (seen[i][j], abs(mu[i] - mu[j]), counts[i][j]))
        elif key == "gap_first":
            j = min(cands, key=lambda j: (abs(mu[i] - mu[j]), seen[i][j], j))
        else:
            raise ValueError(f"unknown swiss key {key!r}")
        batch.append((i, j))
        used.update((i, j))
    return batch[: max(max_pairs, 0)]
