"""GroupMetrics on hand-computed cases: WGA, plain and train-weighted average, mean-group, per-group table."""

import math

import numpy as np
import pytest
import torch

from paperworks_shared.groups import (
    GroupMetrics,
    compute_group_metrics,
    group_accuracies,
    worst_group_accuracy,
)

# 10 examples, 3 groups.
# group 0: 4 examples, 3 correct -> 0.75
# group 1: 2 examples, 0 correct -> 0.0
# group 2: 4 examples, 4 correct -> 1.0
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
P = np.array([0, 0, 0, 1, 0, 0, 1, 1, 1, 1])
G = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
TRAIN = [60, 10, 30]  # training proportions 0.6 / 0.1 / 0.3


def test_hand_computed_group_accuracies_and_wga():
    acc = group_accuracies(P, Y, G)
    np.testing.assert_allclose(acc, [0.75, 0.0, 1.0])
    assert worst_group_accuracy(P, Y, G) == 0.0


def test_both_average_definitions_hand_computed():
    m = GroupMetrics(3, train_group_counts=TRAIN).update(P, Y, G).compute()
    assert m["avg_acc"] == pytest.approx(7 / 10)  # plain: 3 + 0 + 4 correct of 10
    assert m["weighted_avg_acc"] == pytest.approx(0.6 * 0.75 + 0.1 * 0.0 + 0.3 * 1.0)  # = 0.75
    assert m["mean_group_acc"] == pytest.approx((0.75 + 0.0 + 1.0) / 3)
    assert m["worst_group_acc"] == 0.0 and m["worst_group"] == 1
    assert m["n"] == 10


def test_logits_batches_and_torch_inputs_accumulate_like_one_batch():
    logits = torch.nn.functional.one_hot(torch.as_tensor(P), 2).float() * 3.0
    gm = GroupMetrics.from_train_groups(np.repeat([0, 1, 2], TRAIN), 3)
    gm.update(logits[:5], torch.as_tensor(Y[:5]), torch.as_tensor(G[:5]))
    gm.update(logits[5:], torch.as_tensor(Y[5:]), torch.as_tensor(G[5:]))
    one = compute_group_metrics(P, Y, G, 3, train_group_counts=TRAIN)
    assert gm.compute() == pytest.approx(one)


def test_empty_group_is_skipped_and_weights_renormalised():
    # group 1 has no evaluation examples: WGA over groups 0 and 2; weights 0.6/0.9 and 0.3/0.9.
    sel = G != 1
    m = GroupMetrics(3, TRAIN).update(P[sel], Y[sel], G[sel]).compute()
    assert m["worst_group_acc"] == 0.75
    assert m["weighted_avg_acc"] == pytest.approx((0.6 * 0.75 + 0.3 * 1.0) / 0.9)
    assert m["avg_acc"] == pytest.approx(7 / 8)
    rows = GroupMetrics(3, TRAIN).update(P[sel], Y[sel], G[sel]).table()
    assert rows[1]["n"] == 0 and math.isnan(rows[1]["acc"])
    assert [r["train_frac"] for r in rows] == pytest.approx([0.6, 0.1, 0.3])


def test_per_group_table():
    rows = GroupMetrics(3, group_names=["a", "b", "c"]).update(P, Y, G).table()
    assert [(r["group"], r["n"], r["correct"]) for r in rows] == [("a", 4, 3), ("b", 2, 0), ("c", 4, 4)]
    assert "train_frac" not in rows[0]


def test_no_train_counts_gives_nan_weighted_average():
    assert math.isnan(GroupMetrics(3).update(P, Y, G).compute()["weighted_avg_acc"])


def test_overlapping_masks():
    # example 0 in both groups; group 0 = {0, 1} (1 of 2 right), group 1 = {0, 2} (2 of 2 right)
    y = np.array([1, 1, 0])
    p = np.array([1, 0, 0])
    masks = np.array([[1, 1], [1, 0], [0, 1]], dtype=bool)
    np.testing.assert_allclose(group_accuracies(p, y, masks=masks), [0.5, 1.0])
    m = GroupMetrics(2).update(p, y, masks=masks).compute()
    assert m["worst_group_acc"] == 0.5 and m["avg_acc"] == pytest.approx(2 / 3)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="group ids"):
        GroupMetrics(2).update(P, Y, G)
    with pytest.raises(ValueError, match="differ in length"):
        group_accuracies(P[:3], Y, G)
    with pytest.raises(ValueError, match="exactly one"):
        group_accuracies(P, Y)
    with pytest.raises(ValueError, match="train_group_counts"):
        GroupMetrics(3, train_group_counts=[1, 2])
