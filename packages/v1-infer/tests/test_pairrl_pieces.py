"""PairRL reward tables, pair construction and the loss against hand computations (issue 9, part 1)."""

import math

import numpy as np
import pytest
import torch

from v1_infer.pairrl import (
    gen_reward,
    group_advantages,
    make_verification_pairs,
    pair_verifier_reward,
    point_verifier_reward,
    token_mean_clipped_loss,
)


def test_hedging_earns_zero_with_threshold_and_half_without():
    # v = 0.5 for both items: r = 5.5 under (r-1)/9, r = 5 under r/10
    assert pair_verifier_reward(5.5, 5.5, True, False) == 0.0
    assert pair_verifier_reward(5.5, 5.5, True, False, threshold=None) == pytest.approx(0.5)
    assert pair_verifier_reward(5, 5, True, False, norm="over10") == 0.0


def test_perfect_verifier_earns_one():
    assert pair_verifier_reward(10, 1, True, False) == 1.0
    assert pair_verifier_reward(10, 10, True, True) == 1.0
    assert pair_verifier_reward(None, 1, True, False) == 0.0


@pytest.mark.parametrize(
    "norm,correct_table,incorrect_table",
    [
        # rating:            1    2      3  4  5  6  7  8      9      10
        ("minus1_over9", [0, 0, 0, 0, 0, 0, 0, 0, 8 / 9, 1.0], [1.0, 8 / 9, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("over10", [0, 0, 0, 0, 0, 0, 0, 0.8, 0.9, 1.0], [0.9, 0.8, 0, 0, 0, 0, 0, 0, 0, 0]),
    ],
)
def test_reward_tables_hand_computed(norm, correct_table, incorrect_table):
    for r in range(1, 11):
        assert point_verifier_reward(r, True, norm=norm) == pytest.approx(correct_table[r - 1]), (norm, r)
        assert point_verifier_reward(r, False, norm=norm) == pytest.approx(incorrect_table[r - 1]), (norm, r)


def test_pair_reward_is_swap_invariant():
    for ra in range(1, 11):
        for rb in range(1, 11):
            assert pair_verifier_reward(ra, rb, True, False) == pair_verifier_reward(rb, ra, False, True)


def test_pairs_never_incorrect_incorrect():
    rng = np.random.default_rng(0)
    for _ in range(200):
        y = rng.random(4) < 0.4
        pairs = make_verification_pairs(y, k=4, rng=rng)
        assert all(y[a] or y[b] for a, b in pairs) and all(a != b for a, b in pairs)
        assert len(pairs) == min(4, sum(1 for i in range(4) for j in range(i + 1, 4) if y[i] or y[j]))
        assert len(set(frozenset(p) for p in pairs)) == len(pairs)
    assert make_verification_pairs([False] * 4) == []
    assert sorted(map(sorted, make_verification_pairs([True, False, False, False], k=4))) == [
        [0, 1],
        [0, 2],
        [0, 3],
    ]
    assert all(make_verification_pairs([True, True, False], allow_cc=False, k=4, rng=rng))
    assert (0, 1) not in make_verification_pairs(
        [True, True, False], allow_cc=False, k=4, randomize_slots=False
    )


def test_gen_reward_requires_format():
    assert gen_reward(True, "<thinking>x</thinking> answer 4") == 1.0
    assert gen_reward(True, "answer 4") == 0.0
    assert gen_reward(False, "<thinking>x</thinking> answer 4") == 0.0
    assert gen_reward(True, require_format=False) == 1.0


def test_loss_matches_hand_computation():
    logp = torch.log(torch.tensor([[0.5, 0.6], [0.3, 0.2]]))
    old = torch.log(torch.tensor([[0.25, 0.6], [0.6, 0.2]]))  # ratios: [[2, 1], [0.5, 1]]
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    # token objectives: min(2*1, 1.28*1)=1.28 ; min(1,1)=1 ; min(0.5*-1, 0.8*-1) = -0.8 ; masked
    expected = -(1.28 + 1.0 - 0.8) / 3
    got = token_mean_clipped_loss(logp, old, adv, mask)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # clip-higher: a ratio of 1.25 with positive advantage is *not* clipped (1.25 < 1.28)
    one = token_mean_clipped_loss(
        torch.tensor([[math.log(1.25)]]), torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1)
    )
    assert one.item() == pytest.approx(-1.25)


def test_group_advantages_without_std_norm():
    adv = group_advantages([1, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1])
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0.0, 0.0])
