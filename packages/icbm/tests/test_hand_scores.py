"""Acceptance: hand-computed CooP scores on a 2-concept linear model [DESIGN.md §3.4 test 1]."""

import math

import pytest
import torch
from torch import nn

import icbm


def sig(z):
    return 1 / (1 + math.exp(-z))


def hb(p):
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


W = [[2.0, -2.0], [0.5, -0.5]]  # row j = concept j's contribution to the 2 class logits
P = [0.9, 0.5]


def two_concept_model(head: nn.Module | None = None):
    groups = icbm.ConceptGroups.singletons(2)
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(W).T)
    model = icbm.ConceptBottleneckModel(nn.Identity(), head or lin, groups, intervention_format="binary")
    logits = torch.logit(torch.tensor([P]))
    return model, icbm.InteractionState.initial(model, logits)


def pi0(c0, c1):
    """P(class 0) for bottleneck (c0, c1): softmax of (z, -z) with z = 2 c0 + 0.5 c1."""
    return sig(2 * (2 * c0 + 0.5 * c1))


def hand_influence(swap=False, abs_of_expectation=False):
    now = pi0(*P)  # the predicted class is 0 (z > 0)
    out = []
    for j in range(2):
        hi = list(P)
        lo = list(P)
        hi[j], lo[j] = 1.0, 0.0
        w1, w0 = (1 - P[j], P[j]) if swap else (P[j], 1 - P[j])
        d1, d0 = pi0(*hi) - now, pi0(*lo) - now
        out.append(abs(w1 * d1 + w0 * d0) if abs_of_expectation else w1 * abs(d1) + w0 * abs(d0))
    return out


@pytest.mark.parametrize("beta", [0.0, 1.0, 10.0, 100.0])
def test_coop_scores_match_hand_computation(beta):
    model, state = two_concept_model()
    assert int(icbm.predicted_class(state.label_logits)[0]) == 0
    infl = hand_influence()
    expected = [hb(P[j]) + beta * infl[j] for j in range(2)]
    got = icbm.CooP(beta=beta).scores(state)[0].tolist()
    assert got == pytest.approx(expected, abs=1e-6 * max(1.0, beta))  # float32 scores
    assert int(icbm.CooP(beta=beta).select(state)[0]) == max(range(2), key=lambda j: expected[j])


def test_argmax_flips_with_beta():
    _, state = two_concept_model()
    # beta=10: entropy of the 0.5 concept wins; beta=100: influence of concept 0 wins (by hand: S=0.78/0.73, 1.5/4.4)
    assert int(icbm.CooP(beta=10).select(state)[0]) == 1
    assert int(icbm.CooP(beta=100).select(state)[0]) == 0


def test_wrong_formulas_would_be_caught():
    """The hand values discriminate the known bugs: swapped p / 1-p, |E[d]| instead of E[|d|]."""
    _, state = two_concept_model()
    got = icbm.Influence().scores(state)[0].tolist()
    assert got == pytest.approx(hand_influence(), abs=1e-6)
    for wrong in (hand_influence(swap=True), hand_influence(abs_of_expectation=True)):
        assert max(abs(a - b) for a, b in zip(got, wrong)) > 1e-3
    # |E[d]| is available explicitly as CEM's variant, and matches its own hand value
    cem = icbm.Influence(reduction="abs_expected").scores(state)[0].tolist()
    assert cem == pytest.approx(hand_influence(abs_of_expectation=True), abs=1e-6)


def test_general_head_path_equals_linear_fast_path():
    model, state = two_concept_model()
    fast = icbm.CooP(beta=10).scores(state)
    slow = icbm.CooP(beta=10, influence=icbm.Influence(use_linear=False)).scores(state)
    wrapped, st2 = two_concept_model(head=nn.Sequential(model.label_predictor))  # not an nn.Linear
    assert torch.allclose(fast, slow, atol=1e-6)
    assert torch.allclose(fast, icbm.CooP(beta=10).scores(st2), atol=1e-6)


def test_gamma_subtracts_cost_and_uncertainty_is_summed_entropy():
    groups = icbm.ConceptGroups({"a": [0], "b": [1, 2]}, costs={"a": 1.0, "b": 3.0})
    head = nn.Linear(3, 2)
    model = icbm.ConceptBottleneckModel(nn.Identity(), head, groups)
    p = [0.7, 0.2, 0.6]
    state = icbm.InteractionState.initial(model, torch.logit(torch.tensor([p])))
    u = icbm.Uncertainty().scores(state)[0].tolist()
    assert u == pytest.approx([hb(0.7), hb(0.2) + hb(0.6)], abs=1e-6)
    um = icbm.Uncertainty(group_reduce="mean").scores(state)[0].tolist()
    assert um == pytest.approx([hb(0.7), (hb(0.2) + hb(0.6)) / 2], abs=1e-6)
    conf = icbm.Uncertainty(measure="confidence").scores(state)[0].tolist()
    assert conf == pytest.approx([-0.7, -(0.8 + 0.6)], abs=1e-6)
    s0 = icbm.CooP(beta=0.0, gamma=0.0).scores(state)
    s1 = icbm.CooP(beta=0.0, gamma=0.5).scores(state)
    assert (s0 - s1)[0].tolist() == pytest.approx([0.5, 1.5], abs=1e-6)


def test_group_conventions_by_hand():
    """v1 (all-0 / all-1, weights from the mean), v2 (per member) and categorical (one-hot)."""
    groups = icbm.ConceptGroups({"g": [0, 1, 2]}, kinds={"g": "categorical"})
    w = torch.tensor([[1.0, -1.0], [0.0, 0.5], [-2.0, 1.0]])  # concept rows
    head = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(w.T)
    model = icbm.ConceptBottleneckModel(nn.Identity(), head, groups)
    p = torch.tensor([0.6, 0.3, 0.2])
    state = icbm.InteractionState.initial(model, torch.logit(p)[None])

    def pi_y(b):
        z = torch.tensor(b) @ w
        return torch.softmax(z, -1)

    now = pi_y(p.tolist())
    y = int(now.argmax())

    def d(b):
        return abs(float(pi_y(b)[y] - now[y]))

    pl = p.tolist()
    cat = sum(pl[j] / sum(pl) * d([1.0 if i == j else 0.0 for i in range(3)]) for j in range(3))
    m = sum(pl) / 3
    v1 = m * d([1.0] * 3) + (1 - m) * d([0.0] * 3)
    v2 = 0.0
    for j in range(3):
        hi, lo = list(pl), list(pl)
        hi[j], lo[j] = 1.0, 0.0
        v2 += pl[j] * d(hi) + (1 - pl[j]) * d(lo)
    for mode, want in (("categorical", cat), ("auto", cat), ("v1", v1), ("v2", v2)):
        got = float(icbm.Influence(group_mode=mode).scores(state)[0, 0])
        assert got == pytest.approx(want, abs=1e-6), mode


def _kl2(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


@pytest.mark.parametrize("metric", ["kl", "sym_kl"])
def test_kl_influence_metrics_match_hand_computation(metric):
    """KL(pi^v || pi) and its symmetric version, weighted by p_hat / 1 - p_hat (mutation survivor)."""
    _, state = two_concept_model()
    now = [pi0(*P), 1 - pi0(*P)]
    expected = []
    for j in range(2):
        total = 0.0
        for v, w in ((1.0, P[j]), (0.0, 1 - P[j])):
            c = list(P)
            c[j] = v
            after = [pi0(*c), 1 - pi0(*c)]
            d = _kl2(after, now) + (_kl2(now, after) if metric == "sym_kl" else 0.0)
            total += w * abs(d)
        expected.append(total)
    got = icbm.Influence(metric=metric).scores(state)[0].tolist()
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_coop_defaults_are_the_documented_ones():
    """README / notes: alpha = 1, beta = 10, gamma = 0 (a changed default would change every CLI run)."""
    p = icbm.CooP()
    assert (p.alpha, p.beta, p.gamma) == (1.0, 10.0, 0.0)
