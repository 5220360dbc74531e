"""Golden µ example (DESIGN.md §1.2) and the aggregation formulas."""

import numpy as np
import pytest

from v1_infer import WinRateStats, bradley_terry


def test_golden_mu_example():
    s = WinRateStats(3, tau=0.1)
    s.update(0, 1, 4, 8)
    s.update(1, 2, 7, 3)
    s.update(0, 2, 5, 5)
    np.testing.assert_allclose(s.wins, [0.05, 0.888889, 0.05], atol=1e-6)
    np.testing.assert_allclose(s.W, [0.544444, 0.888889, 0.544444], atol=1e-6)
    np.testing.assert_allclose(s.mu, [0.091837, 1.0, 0.091837], atol=1e-6)
    np.testing.assert_allclose(s.avg_rating, [4.5, 7.5, 4.0], atol=1e-12)
    assert s.ranking() == [1, 0, 2]


def test_weight_is_margin_over_nine_floored_at_tau():
    s = WinRateStats(2, tau=0.1)
    assert s.update(0, 1, 10, 1) == pytest.approx(1.0)
    assert s.update(0, 1, 6, 5) == pytest.approx(1 / 9)  # 1/9 = 0.111 > tau
    assert s.update(0, 1, 5, 5) == pytest.approx(0.1)  # tie -> tau
    s2 = WinRateStats(2, tau=0.5)
    assert s2.update(0, 1, 9, 5) == pytest.approx(0.5)  # 4/9 < tau


def test_win_adds_to_winner_and_main_text_sign_reverses_it():
    good = WinRateStats(2)
    good.update(0, 1, 9, 2)
    assert good.mu[0] == 1.0 and good.mu[1] == 0.0
    bad = WinRateStats(2, sign="main_text")
    bad.update(0, 1, 9, 2)
    assert bad.mu[0] == 0.0 and bad.mu[1] == 1.0


def test_uncompared_keep_half_and_rank_below_compared_ties():
    s = WinRateStats(3)
    s.update(0, 1, 5, 5)
    assert s.mu.tolist() == [0.5, 0.5, 0.5]
    assert s.avg_rating.tolist() == [5.0, 5.0, 0.0]
    assert s.ranking()[-1] == 2
    assert s.degree.tolist() == [1, 1, 0]


def test_self_comparison_rejected():
    with pytest.raises(ValueError, match="itself"):
        WinRateStats(2).update(1, 1, 5, 6)


def test_bradley_terry_orders_by_strength():
    pts = np.zeros((3, 3))
    pts[0, 1], pts[1, 0] = 3, 1
    pts[1, 2], pts[2, 1] = 3, 1
    pts[0, 2], pts[2, 0] = 4, 0
    s = bradley_terry(pts)
    assert s[0] > s[1] > s[2]
    # symmetric data -> equal strengths
    sym = bradley_terry(np.array([[0, 2.0], [2.0, 0]]))
    assert sym[0] == pytest.approx(sym[1])


def test_points_matrix_counts_wins_losses_and_half_ties():
    s = WinRateStats(3)
    s.update(0, 1, 8, 3)  # 0 beats 1
    s.update(2, 1, 4, 4)  # tie
    s.update(2, 0, 9, 2)  # 2 beats 0
    assert s.points.tolist() == [[0, 1, 0], [0, 0, 0.5], [1, 0.5, 0]]
    assert s.points.sum() == 3  # one point per game
    assert s.seen(0, 1) and s.seen(1, 2) and s.seen(2, 1) and not s.seen(0, 0)
    assert WinRateStats(3).seen(0, 1) is False


def test_bradley_terry_satisfies_its_likelihood_equations():
    # at the MM fixed point: wins_i + prior/2 = sum_j games_ij p_i/(p_i+p_j) + prior p_i/(p_i+1)
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 4, size=(5, 5)).astype(float)
    np.fill_diagonal(pts, 0)
    for prior in (1.0, 2.0):
        p = np.exp(bradley_terry(pts, prior=prior, iters=5000, tol=1e-12))
        games = pts + pts.T
        expected = (games * p[:, None] / (p[:, None] + p[None, :])).sum(1) + prior * p / (p + 1)
        np.testing.assert_allclose(pts.sum(1) + prior / 2, expected, rtol=1e-6)


def test_random_tiebreak_uses_the_given_rng():
    s = WinRateStats(8)  # all mu equal: the order is the random permutation
    orders = {tuple(s.ranking("random", np.random.default_rng(k))) for k in range(6)}
    assert len(orders) > 1
    assert s.ranking("random", np.random.default_rng(3)) == s.ranking("random", np.random.default_rng(3))


def test_zero_candidates_is_allowed_and_negative_is_not():
    assert WinRateStats(0).ranking() == []
    with pytest.raises(ValueError):
        WinRateStats(-1)
