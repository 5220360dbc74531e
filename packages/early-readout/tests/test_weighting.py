"""Weight formulas and margins on hand-computed values (DESIGN.md §1.4 table, §3.4 unit test (b))."""

import math

import pytest
import torch

from early_readout.weighting import affine_exp_weights, exp_pow_weights, get_weight_fn, margin


@pytest.mark.parametrize(
    "m,expected",
    [(0.01, 24.0), (0.1, 35.3), (0.3, 43.2), (0.5, 47.6), (0.9, 53.5), (1.0, 54.6)],
)
def test_exp_pow_matches_notes_table(m, expected):
    # DESIGN.md §1.4, CUB row (alpha=0.05, beta=4)
    assert exp_pow_weights(torch.tensor([m]), 0.05, 4.0).item() == pytest.approx(expected, abs=0.05)


def test_exp_pow_hand_values():
    m = torch.tensor([0.0, 0.25, 0.5, 1.0])
    expected = [math.exp(4 * 0.0), math.exp(4 * 0.25**0.05), math.exp(4 * 0.5**0.05), math.exp(4.0)]
    assert exp_pow_weights(m, 0.05, 4.0).tolist() == pytest.approx(expected, rel=1e-6)
    # CelebA constants (0.1, 3.5) at m=0.5 -> 26.2
    assert exp_pow_weights(torch.tensor([0.5]), 0.1, 3.5).item() == pytest.approx(26.2, abs=0.05)


def test_affine_exp_hand_values():
    m = torch.tensor([0.0, 0.1, 0.5, 0.9])
    got = affine_exp_weights(m, 4.0, 5.0).tolist()
    assert got[0] == pytest.approx(1.0)
    assert got[1] == pytest.approx(4 * (math.exp(0.5) - 1) + 1, rel=1e-6)  # 3.59
    assert got[2] == pytest.approx(45.73, abs=0.01)  # DESIGN.md §3.4 (b): 45.7
    assert got[3] == pytest.approx(357.07, abs=0.05)  # DESIGN.md §1.4: m=0.9 -> 357


def test_weight_fn_by_name_uses_formula_defaults():
    m = torch.tensor([0.5])
    assert get_weight_fn("exp_pow")(m).item() == pytest.approx(math.exp(4 * 0.5**0.05))
    assert get_weight_fn("affine_exp")(m).item() == pytest.approx(4 * (math.exp(2.5) - 1) + 1)
    assert get_weight_fn("affine_exp", alpha=6, beta=3)(m).item() == pytest.approx(
        6 * (math.exp(1.5) - 1) + 1
    )
    with pytest.raises(ValueError, match="unknown weight_fn"):
        get_weight_fn("exp")


def test_margin_top2_binary_equals_abs_difference():
    p = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    assert margin(p).tolist() == pytest.approx([0.4, 0.6, 0.0])
    assert margin(p).tolist() == pytest.approx((p[:, 0] - p[:, 1]).abs().tolist())


def test_margin_multiclass_and_pred_minus_true():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.25, 0.65]])
    assert margin(p, kind="top2").tolist() == pytest.approx([0.2, 0.4])
    y = torch.tensor([2, 2])
    assert margin(p, y, kind="pred_minus_true").tolist() == pytest.approx([0.3, 0.0])
    with pytest.raises(ValueError, match="needs the targets"):
        margin(p, kind="pred_minus_true")
    with pytest.raises(ValueError, match="unknown margin"):
        margin(p, kind="top3")


def test_formula_default_constants_are_the_cub_values():
    """Mutation-pass survivor: the functions' own defaults (used by direct callers) must be DESIGN.md §1.4's
    CUB constants, (0.05, 4) for exp_pow and (4, 5) for affine_exp, like get_weight_fn's."""
    m = torch.tensor([0.01, 0.3, 0.9])
    assert torch.equal(exp_pow_weights(m), exp_pow_weights(m, 0.05, 4.0))
    assert torch.equal(affine_exp_weights(m), affine_exp_weights(m, 4.0, 5.0))
    assert torch.equal(get_weight_fn("exp_pow")(m), exp_pow_weights(m, 0.05, 4.0))
