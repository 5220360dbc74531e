import math
import warnings

import numpy as np
import pytest

from mast.agreement import (
    DegenerateKappaWarning,
    binary_metrics,
    bootstrap_ci,
    cohen_kappa,
    fleiss_from_ratings,
    fleiss_kappa,
    krippendorff_alpha_binary,
    pairwise_mean_kappa,
    per_mode_table,
    pooled_metrics,
)


def test_table2_fewshot_row():
    m = binary_metrics(tp=10, fp=2, fn=3, tn=69)
    assert round(m["accuracy"], 3) == 0.940
    assert round(m["recall"], 3) == 0.769
    assert round(m["precision"], 3) == 0.833
    assert round(m["f1"], 3) == 0.800
    assert round(m["kappa"], 3) == 0.765
    assert m["kappa"] == pytest.approx(0.7651, abs=1e-4)


def test_cohen_textbook():
    # Wikipedia: 20 yes/yes, 5 yes(A)/no(B), 10 no(A)/yes(B), 15 no/no -> 0.4
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert binary_metrics(20, 10, 5, 15)["kappa"] == pytest.approx(0.4)


def test_fleiss_textbook():
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert round(fleiss_kappa(table), 3) == 0.210
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[1, 1], [2, 1]])


def test_krippendorff_hand_computed():
    a = [1, 1, 0, 0, 1, 0, 1, 0]
    b = [1, 0, 0, 0, 1, 0, 1, 1]
    # n=16 values, n0=n1=8, o01=o10=2 -> alpha = 1 - 15*2/64
    assert krippendorff_alpha_binary([a, b]) == pytest.approx(1 - 15 * 2 / 64)
    assert fleiss_from_ratings(np.array([a, b])) == pytest.approx(0.5)  # = Scott's pi for 2 raters
    # missing values: an item rated once is not pairable and is ignored
    assert krippendorff_alpha_binary([a + [1], b + [None]]) == pytest.approx(1 - 15 * 2 / 64)


def test_degenerate_policy():
    with pytest.warns(DegenerateKappaWarning):
        assert math.isnan(cohen_kappa([0, 0, 0], [0, 0, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cohen_kappa([0, 0, 0], [0, 0, 0], degenerate="one") == 1.0
    # constant but opposite raters: p_e = 0, not degenerate -> kappa = 0
    assert cohen_kappa([0, 0, 0], [1, 1, 1]) == 0.0
    with pytest.raises(ValueError, match="degenerate"):
        cohen_kappa([0, 1], [0, 1], degenerate="zero")
    with pytest.raises(ValueError, match="length mismatch"):
        cohen_kappa([0, 1], [0])


def test_pairwise_and_pooled_and_bootstrap():
    r = [[1, 0, 1, 0, 1, 1], [1, 0, 1, 0, 0, 1], [1, 1, 1, 0, 1, 1]]
    ks = [cohen_kappa(r[0], r[1]), cohen_kappa(r[0], r[2]), cohen_kappa(r[1], r[2])]
    assert pairwise_mean_kappa(r) == pytest.approx(np.mean(ks))
    ref = np.array([[1, 0], [0, 0], [1, 1], [0, np.nan]])
    pred = np.array([[1, 0], [1, 0], [1, 1], [0, 1]])
    assert pooled_metrics(ref, pred)["n"] == 7
    rng = np.random.default_rng(0)
    h = (rng.random((200, 5)) < 0.3).astype(float)
    j = np.where(rng.random(h.shape) < 0.1, 1 - h, h)
    k = pooled_metrics(h, j)["kappa"]
    lo, hi = bootstrap_ci(h, j, lambda a, b: pooled_metrics(a, b)["kappa"], n_boot=200)
    assert lo < k < hi and hi - lo < 0.2
    rows = per_mode_table(h, j, list("abcde"), n_boot=50)
    assert [r["mode"] for r in rows] == list("abcde") and all(r["kappa_lo"] <= r["kappa_hi"] for r in rows)


def test_cohen_kappa_matches_sklearn_on_random_label_sets():
    """Multi-class ints, strings, bools and integral floats, with and without weights/labels: exactly
    scikit-learn's value (the old bool() coercion gave 1.0 for 3-class labels and NaN for strings)."""
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    n_checked = 0
    for trial in range(120):
        k = int(rng.integers(2, 6))
        n = int(rng.integers(5, 60))
        a = rng.integers(0, k, n)
        b = np.where(rng.random(n) < 0.6, a, rng.integers(0, k, n))
        kind = trial % 4
        if kind == 1:
            names = np.array(["no", "yes", "maybe", "n/a", "z"][:k])
            a, b = names[a], names[b]
        elif kind == 2 and k == 2:
            a, b = a.astype(bool), b.astype(bool)
        elif kind == 3:
            a, b = a.astype(float), b.astype(float)
        weights = [None, "linear", "quadratic"][trial % 3] if kind != 1 else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = cohen_kappa_score(a, b, weights=weights)
            got = cohen_kappa(list(a), list(b), weights=weights)
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(want, abs=1e-12), (trial, list(a), list(b), weights)
            n_checked += 1
    assert n_checked > 100
    # 3-class labels: the old code said 1.0 here
    a, b = [0, 1, 2, 2, 1, 0], [0, 2, 1, 2, 1, 0]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(a, b) < 0.6
    # strings: the old code said NaN
    assert cohen_kappa(["yes", "no", "no", "yes"], ["yes", "no", "yes", "yes"]) == pytest.approx(0.5)
    # labels= restricts the table like scikit-learn's
    a, b = [0, 1, 2, 2, 1, 0, 3], [0, 2, 1, 2, 1, 3, 3]
    assert cohen_kappa(a, b, labels=[0, 1, 2]) == pytest.approx(cohen_kappa_score(a, b, labels=[0, 1, 2]))


@pytest.mark.parametrize(
    "a, b, match",
    [
        ([0, 1, float("nan")], [0, 1, 1], "not finite"),
        ([0, 1, 0.5], [0, 1, 1], "continuous"),
        (["yes", "no"], [1, 0], "mix strings and numbers"),
        ([0, [1]], [0, 1], "unsupported label type"),
        ([0, 1], [0, 1], "weights"),
    ],
)
def test_cohen_kappa_refuses_bad_labels(a, b, match):
    kw = {"weights": "cubic"} if match == "weights" else {}
    with pytest.raises(ValueError, match=match):
        cohen_kappa(a, b, **kw)


def test_binary_helpers_refuse_non_binary_labels():
    with pytest.raises(ValueError, match="binary label expected"):
        binary_metrics(*__import__("mast.agreement", fromlist=["confusion"]).confusion([0, 2], [0, 1]))
    from mast.agreement import label_matrix

    with pytest.raises(ValueError, match="binary label expected"):
        label_matrix([{"1.1": 2}], ["1.1"])
    with pytest.raises(ValueError, match="0/1"):
        krippendorff_alpha_binary([[0, 2], [0, 1]])
    with pytest.raises(ValueError, match="0/1"):
        fleiss_from_ratings(np.array([[0, 2], [0, 1]]))
    assert label_matrix([{"1.1": True, "1.2": None}], ["1.1", "1.2"]).tolist()[0][0] == 1.0


def test_f1_and_binary_labels_edge_cases():
    assert binary_metrics(0, 0, 3, 5)["f1"] == 0.0  # no predicted positives: F1 is 0, not undefined
    assert binary_metrics(0, 3, 3, 5)["f1"] == 0.0
    assert binary_metrics(1, 2, 0, 5)["f1"] == pytest.approx(0.5)
    with pytest.warns(DegenerateKappaWarning):
        assert math.isnan(binary_metrics(0, 0, 0, 5)["f1"])
    from mast.agreement import confusion, label_matrix

    assert confusion([0, 1, 1, 0, None], [0, 1, 0, 0, 1]) == (1, 0, 1, 2)  # ints, None skipped
    assert confusion([0.0, 1.0, np.int64(1)], [0, 1, np.bool_(True)]) == (2, 0, 0, 1)
    assert label_matrix([{"1.1": 1, "1.2": 0}], ["1.1", "1.2"]).tolist() == [[1.0, 0.0]]


def test_fleiss_shape_checks():
    assert fleiss_kappa([[2, 1]]) == pytest.approx(-0.5)  # one item is a valid table
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[1, 0], [0, 1]])  # one rating per item
    with pytest.raises(ValueError, match="non-empty"):
        fleiss_kappa(np.zeros((0, 2)))


def test_bootstrap_interval_has_the_requested_level():
    """Mean of 200 Bernoulli(0.3) cells: the bootstrap sd is ~0.0324, so the 95% interval is ~0.127 wide
    (an 80% one would be ~0.083)."""
    rng = np.random.default_rng(1)
    x = (rng.random((200, 1)) < 0.3).astype(float)
    lo, hi = bootstrap_ci(x, x, lambda a, b: float(a.mean()), n_boot=2000)
    sd = math.sqrt(x.mean() * (1 - x.mean()) / 200)
    assert hi - lo == pytest.approx(2 * 1.96 * sd, rel=0.12)
    lo8, hi8 = bootstrap_ci(x, x, lambda a, b: float(a.mean()), n_boot=2000, level=0.8)
    assert hi8 - lo8 == pytest.approx(2 * 1.2816 * sd, rel=0.12)
