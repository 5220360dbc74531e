"""Random baselines, expected information gain by hand, and CooP tuning."""

import math

import pytest
import torch
from torch import nn

import icbm

P = [0.9, 0.5]


def pi0(c0, c1):
    """P(class 0) for the head W = [[2, -2], [0.5, -0.5]] (rows = concepts), no bias."""
    return 1 / (1 + math.exp(-2 * (2 * c0 + 0.5 * c1)))


def two_concept_model():
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, -2.0], [0.5, -0.5]]).T)
    model = icbm.ConceptBottleneckModel(nn.Identity(), lin, icbm.ConceptGroups.singletons(2))
    return model, icbm.InteractionState.initial(model, torch.logit(torch.tensor([P])))


def test_random_orders(synthetic):
    _, model, _, _, te = synthetic
    logits = icbm.predict_concept_logits(model, te)[:50]
    st = icbm.InteractionState.initial(model, logits)
    per = icbm.Random(seed=0).scores(st)
    order = per.argsort(dim=1)
    assert len({tuple(r.tolist()) for r in order}) > 40  # different instances, different orders
    assert not torch.equal(per, icbm.Random(seed=1).scores(st))  # seeds differ
    assert torch.equal(per, icbm.Random(seed=0).scores(st))  # and are reproducible
    glob = icbm.Random(seed=0, per_instance=False).scores(st)
    assert (glob == glob[:1]).all()  # one order for the whole split
    # uniform over first choices: each of the 16 groups picked roughly equally often over many instances
    first = icbm.Random(seed=0).select(
        icbm.InteractionState.initial(model, icbm.predict_concept_logits(model, te))
    )
    counts = torch.bincount(first, minlength=16).float()
    assert counts.min() > 0 and counts.max() < 4 * counts.mean()


def test_expected_information_gain_by_hand():
    _, state = two_concept_model()
    got = icbm.ExpectedInformationGain().scores(state)[0].tolist()
    want = []
    for j in range(2):
        hi, lo = list(P), list(P)
        hi[j], lo[j] = 1.0, 0.0
        q1, q0 = pi0(*hi), pi0(*lo)
        w1, w0 = P[j], 1 - P[j]
        mix = w1 * q1 + w0 * q0

        def kl(a, b):
            return a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))

        want.append(w1 * kl(q1, mix) + w0 * kl(q0, mix))
    assert got == pytest.approx(want, abs=1e-6)


def test_tune_coop_returns_best_grid_point(synthetic):
    _, model, _, va, _ = synthetic
    res = icbm.tune_coop(model, va, betas=(0.0, 10.0), gammas=(0.0,), budget=3)
    assert len(res.rows) == 2
    assert res.policy.beta == res.best["beta"]
    assert res.best["val_score"] == max(r["val_score"] for r in res.rows)
    # recomputing the winner's score reproduces it (selection uses validation only)
    curve = icbm.evaluate_interventions(model, va, icbm.CooP(beta=res.policy.beta), 3)
    assert float(curve.accuracy[1:].mean()) == pytest.approx(res.best["val_score"])
