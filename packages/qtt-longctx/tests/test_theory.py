"""Acceptance: numeric checks of Lemma 2.2, Lemma 2.3, Prop 3.1 and Lemma 3.2."""

import math

import pytest
import torch

from qtt_longctx import theory


@pytest.mark.parametrize("T", [16, 128, 1024])
def test_prop_3_1_gradient_matches_autograd_and_finite_differences(T):
    g = torch.Generator().manual_seed(T)
    d = 8
    K = torch.randn(T, d, generator=g, dtype=torch.float64)
    q = torch.randn(d, generator=g, dtype=torch.float64, requires_grad=True)
    needle = T // 3
    auto = torch.autograd.grad(theory.needle_loss(q, K, needle), q)[0]
    closed = theory.query_gradient(q.detach(), K, needle)
    fd = theory.finite_difference_gradient(q.detach(), K, needle)
    torch.testing.assert_close(closed, auto, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(closed, fd, atol=1e-8, rtol=1e-6)
    # direction: a small descent step raises the needle's attention mass
    a0 = theory.attention(q.detach(), K)[needle]
    a1 = theory.attention(q.detach() - 0.1 * closed, K)[needle]
    assert a1 > a0


@pytest.mark.parametrize("eta", [1e-3, 1e-2])
def test_lemma_3_2_margin_gain(eta):
    g = torch.Generator().manual_seed(0)
    K = torch.randn(256, 16, generator=g, dtype=torch.float64)
    q = torch.randn(16, generator=g, dtype=torch.float64)
    measured, predicted = theory.margin_gain(q, K, 5, eta)
    assert predicted > 0
    assert abs(measured - predicted) / predicted < 2e-2


def test_lemma_3_2_gain_grows_with_diffuseness():
    """‖∇ℓ‖ = (1 − α*)·‖k* − μ_distractors‖/√d: with the distractor centroid fixed (the same 4 keys tiled
    to any T), a longer context lowers α* and raises the first-order margin gain η‖∇ℓ‖²."""
    g = torch.Generator().manual_seed(0)
    d = 8
    base = torch.randn(4, d, generator=g, dtype=torch.float64)
    k_star = torch.randn(1, d, generator=g, dtype=torch.float64)
    q = 2 * k_star[0] + 0.5 * torch.randn(d, generator=g, dtype=torch.float64)
    gains = []
    for reps in (1, 8, 64, 512):
        K = torch.cat([k_star, base.repeat(reps, 1)])
        a = theory.attention(q, K)
        grad = theory.query_gradient(q, K, 0)
        mu_d = theory.attention(q, base) @ base  # distractor centroid: the same for every tiling
        closed = (1 - a[0]) * (k_star[0] - mu_d).norm() / d**0.5
        assert abs(grad.norm() - closed) < 1e-12
        gains.append(float(grad @ grad))
    assert gains == sorted(gains) and gains[-1] > 2 * gains[0]


@pytest.mark.parametrize("T", [8, 64, 512, 4096])
def test_lemma_2_2_bound_is_tight_for_equal_gap_distractors(T):
    r = theory.dilution_experiment(T, delta=1.5)
    assert r["mass"] <= r["bound"] + 1e-9
    assert abs(r["mass"] - r["bound"]) < 1e-9  # all distractors exactly Δ below: equality
    assert r["mass"] < 1.0 / (1 + (T - 1) * math.exp(-1.5)) + 1e-9


def test_lemma_2_2_bound_holds_for_random_logits():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        z = torch.randn(300, generator=g, dtype=torch.float64) * 2
        a = torch.softmax(z, 0)
        star = int(torch.argmax(z))
        for delta in (0.5, 1.0, 3.0):
            m = int(((z >= z[star] - delta).sum() - 1).item())
            assert a[star] <= theory.dilution_bound(m, delta) + 1e-12


def test_lemma_2_3_margin_suffices():
    T, eps = 1000, 0.1
    gap = theory.margin_for_mass(T, eps)
    z = torch.zeros(T, dtype=torch.float64)
    z[0] = gap
    assert torch.softmax(z, 0)[0] >= 1 - eps - 1e-12
    z[0] = gap - 0.5
    assert torch.softmax(z, 0)[0] < 1 - eps
