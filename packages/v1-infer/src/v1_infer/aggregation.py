"""Score aggregation: the margin-weighted win rate µ (paper Eq. 1 / App. D Alg. 3) and Bradley-Terry.

For one comparison (i, j) with ratings (r_i, r_j) clamped to [1, 10]:
    v_ij = 1 if r_i > r_j, 0.5 on a tie, 0 if r_i < r_j       (appendix + code; the main text is reversed)
    w_ij = max(|r_i - r_j| / 9, tau)                             (9 = span of the 1..10 scale)
    wins[i] += w v_ij, wins[j] += w (1 - v_ij), W[i] += w, W[j] += w
    µ_i = wins[i] / W[i]   (0.5 before any comparison)
The final order sorts by (-µ, -average raw rating).
"""

from __future__ import annotations

import numpy as np


class WinRateStats:
    """Sufficient statistics of the weighted win rate for N candidates, updated one comparison at a time."""

    def __init__(self, n: int, tau: float = 0.1, weighted: bool = True, sign: str = "appendix"):
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if sign not in ("appendix", "main_text"):
            raise ValueError(f"sign must be 'appendix' or 'main_text', got {sign!r}")
        self.n, self.tau, self.weighted, self.sign = n, float(tau), weighted, sign
        self.wins = np.zeros(n)
        self.W = np.zeros(n)
        self.rating_sum = np.zeros(n)
        self.rating_cnt = np.zeros(n, dtype=np.int64)
        self.counts = np.zeros((n, n), dtype=np.int64)
        # outcomes for Bradley-Terry: wins_ij[i, j] = (unweighted) points i scored against j
        self.points = np.zeros((n, n))

    def update(self, i: int, j: int, r_i: float, r_j: float) -> float:
        """Add one comparison; returns the weight used."""
        if i == j:
            raise ValueError(f"cannot compare candidate {i} with itself")
        if r_i > r_j:
            v = 1.0
        elif r_i < r_j:
            v = 0.0
        else:
            v = 0.5
        if self.sign == "main_text":  # Eq. 1 read literally: {0, 0.5, 1} = {win, tie, loss} (the bug)
            v = 1.0 - v
        w = max(abs(r_i - r_j) / 9.0, self.tau) if self.weighted else 1.0
        self.wins[i] += w * v
        self.wins[j] += w * (1.0 - v)
        self.W[i] += w
        self.W[j] += w
        self.rating_sum[i] += r_i
        self.rating_sum[j] += r_j
        self.rating_cnt[i] += 1
        self.rating_cnt[j] += 1
        self.counts[i, j] += 1
        self.counts[j, i] += 1
        self.points[i, j] += v
        self.points[j, i] += 1.0 - v
        return w

    @property
    def mu(self) -> np.ndarray:
        """Weighted win rate µ per candidate (0.5 when never compared)."""
        out = np.full(self.n, 0.5)
        m = self.W > 0
        out[m] = self.wins[m] / self.W[m]
        return out

    @property
    def avg_rating(self) -> np.ndarray:
        """Average raw rating received per candidate (0 when never compared, as in the code)."""
        out = np.zeros(self.n)
        m = self.rating_cnt > 0
        out[m] = self.rating_sum[m] / self.rating_cnt[m]
        return out

    @property
    def degree(self) -> np.ndarray:
        """Number of *distinct* opponents per candidate."""
        return (self.counts > 0).sum(axis=1)

    def seen(self, i: int, j: int) -> bool:
        return bool(self.counts[i, j] > 0)

    def ranking(self, tiebreak: str = "avg_rating", rng: np.random.Generator | None = None) -> list[int]:
        """Order by (-µ, -secondary key); secondary = average rating, index, or a random permutation."""
        mu = self.mu
        if tiebreak == "avg_rating":
            second = -self.avg_rating
        elif tiebreak == "index":
            second = np.zeros(self.n)
        elif tiebreak == "random":
            second = (rng or np.random.default_rng(0)).permutation(self.n).astype(float)
        else:
            raise ValueError(f"unknown tiebreak {tiebreak!r}")
        # np.lexsort sorts by the last key first; the index keeps it stable
        return [int(k) for k in np.lexsort((np.arange(self.n), second, -mu))]


def bradley_terry(points: np.ndarray, prior: float = 1.0, iters: int = 300, tol: float = 1e-6) -> np.ndarray:
    """Bradley-Terry log-strengths by the MM algorithm (Hunter 2004) from a points matrix.

    ``points[i, j]`` = points i scored against j (a win 1, a tie 0.5 each). ``prior`` adds that many
    virtual games (half won, half lost) against a reference player of strength 1, which keeps the MLE
    finite for undefeated or winless candidates. Returns log-strengths (higher = better).
    """
    points = np.asarray(points, dtype=float)
    n = points.shape[0]
    if points.shape != (n, n):
        raise ValueError(f"points must be square, got {points.shape}")
    games = points + points.T
    won = points.sum(axis=1) + prior / 2
    p = np.ones(n)
    for _ in range(iters):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1) + prior / (p + 1.0)
        new = won / np.maximum(denom, 1e-300)
        new = np.maximum(new, 1e-12)
        if np.max(np.abs(np.log(new) - np.log(p))) < tol:
            p = new
            break
        p = new
    return np.log(p)
