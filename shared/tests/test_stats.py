"""The verdict function: each of the four outcomes from fixed numbers (issue 19)."""

import math

import pytest

from paperworks_shared.stats import paired_verdict, seeds_needed, t_quantile


def test_t_quantile_matches_tables():
    assert t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(30) == pytest.approx(2.042, abs=1e-3)


def test_holds():
    v = paired_verdict([0.10, 0.12, 0.08, 0.11, 0.09])
    # mean 0.10, sd 0.01581, half = 2.776 * 0.01581 / sqrt(5) = 0.01963
    assert v.verdict == "holds"
    assert v.mean == pytest.approx(0.10)
    assert v.ci_low == pytest.approx(0.10 - 0.019630, abs=1e-5)
    assert v.ci_high == pytest.approx(0.10 + 0.019630, abs=1e-5)


def test_reversed():
    assert paired_verdict([-0.05, -0.07, -0.06]).verdict == "reversed"


def test_equivalent_within_delta_wins_over_a_tiny_significant_effect():
    v = paired_verdict([0.001, 0.002, 0.0015, 0.0012], delta=0.01)
    assert v.verdict == "equivalent" and v.ci_low > 0  # significant but inside the margin
    assert paired_verdict([0.001, 0.002, 0.0015, 0.0012]).verdict == "holds"  # no margin stated


def test_underpowered_says_how_many_seeds():
    v = paired_verdict([0.05, -0.01, 0.08])
    assert v.verdict == "underpowered"
    assert v.seeds_needed is not None and v.seeds_needed > 3
    # with that many seeds and the same mean/sd, the interval would exclude 0
    n = v.seeds_needed
    assert t_quantile(n - 1) * v.sd / math.sqrt(n) < abs(v.mean)
    assert t_quantile(n - 2) * v.sd / math.sqrt(n - 1) >= abs(v.mean)
    assert "seeds would decide it" in v.describe()


def test_one_seed_is_never_a_verdict():
    v = paired_verdict([0.3])
    assert v.verdict == "underpowered" and v.ci_low is None and "one seed" in v.describe()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="finite"):
        paired_verdict([0.1, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        paired_verdict([])
    with pytest.raises(ValueError, match="delta"):
        paired_verdict([0.1, 0.2], delta=0)
    assert seeds_needed(0.0, 0.1) is None
