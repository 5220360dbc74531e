"""Numeric forms of the paper's score-dilution theory (§2-3), on one attention head.

* Lemma 2.2: if m distractor logits are within Δ of the needle's, α_{j*} ≤ 1 / (1 + m·e^{−Δ}).
* Lemma 2.3: a margin ≥ log((T−1)(1−ε)/ε) over every distractor guarantees α_{j*} ≥ 1 − ε.
* Prop 3.1: for ℓ = −log α_{j*} with keys fixed, ∇_q ℓ = (μ − k_{j*}) / √d, μ = Σ_j α_j k_j.
* Lemma 3.2: M(q − η∇ℓ) = M(q) + η‖∇ℓ‖² + O(η²), with M = −ℓ the log-mass margin.
"""

from __future__ import annotations

import math

import torch


def attention(q: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Softmax attention weights of one query `q` (d,) over keys `K` (T, d) with 1/√d scaling."""
    return torch.softmax(K @ q / math.sqrt(q.shape[-1]), -1)


def needle_loss(q: torch.Tensor, K: torch.Tensor, needle: int) -> torch.Tensor:
    """ℓ = −log α_{needle} (Prop 3.1's retrieval loss)."""
    return -torch.log_softmax(K @ q / math.sqrt(q.shape[-1]), -1)[needle]


def query_gradient(q: torch.Tensor, K: torch.Tensor, needle: int) -> torch.Tensor:
    """Prop 3.1 in closed form: (μ − k_{j*}) / √d."""
    a = attention(q, K)
    return (a @ K - K[needle]) / math.sqrt(q.shape[-1])


def dilution_bound(m: int, delta: float) -> float:
    """Lemma 2.2 upper bound on the needle's attention mass."""
    return 1.0 / (1.0 + m * math.exp(-delta))


def margin_for_mass(T: int, eps: float) -> float:
    """Lemma 2.3: a margin this large over every distractor gives needle mass ≥ 1 − ε."""
    return math.log((T - 1) * (1 - eps) / eps)


def finite_difference_gradient(
    q: torch.Tensor, K: torch.Tensor, needle: int, h: float = 1e-6
) -> torch.Tensor:
    """Central finite differences of `needle_loss` wrt q (float64 recommended)."""
    g = torch.zeros_like(q)
    for i in range(q.numel()):
        e = torch.zeros_like(q)
        e[i] = h
        g[i] = (needle_loss(q + e, K, needle) - needle_loss(q - e, K, needle)) / (2 * h)
    return g


def margin_gain(q: torch.Tensor, K: torch.Tensor, needle: int, eta: float) -> tuple[float, float]:
    """(measured M(q − η g) − M(q), predicted η‖g‖²) for Lemma 3.2."""
    g = query_gradient(q, K, needle)
    before = -needle_loss(q, K, needle)
    after = -needle_loss(q - eta * g, K, needle)
    return float(after - before), float(eta * (g @ g))


def dilution_experiment(T: int, d: int = 16, delta: float = 1.0, seed: int = 0) -> dict:
    """A needle whose logit beats T−1 distractors by exactly Δ: measured mass vs the Lemma 2.2 bound,
    and the Prop 3.1 gradient norm (which grows as attention gets more diffuse, Lemma 3.2)."""
    gen = torch.Generator().manual_seed(seed)
    K = torch.randn(T, d, generator=gen, dtype=torch.float64)
    q = torch.randn(d, generator=gen, dtype=torch.float64)
    q = q / q.norm() * math.sqrt(d) * 2.0
    needle = 0
    z = K @ q / math.sqrt(d)
    # place every distractor exactly Δ below the needle: z_j = z_* − Δ  (worst case allowed by the lemma)
    target = torch.full((T,), float(z[needle] - delta), dtype=torch.float64)
    target[needle] = z[needle]
    # adjust keys along q so that K q / √d = target (keeps the key geometry otherwise random)
    K = K + ((target - z) * math.sqrt(d) / (q @ q))[:, None] * q[None, :]
    mass = float(attention(q, K)[needle])
    g = query_gradient(q, K, needle)
    return dict(T=T, mass=mass, bound=dilution_bound(T - 1, delta), grad_norm_sq=float(g @ g))
