"""Acceptance: no peeking, batch invariance, never re-asking, full reveal = same prediction [DESIGN.md §3.4]."""

import pytest
import torch

import icbm
from icbm.data import ConceptDataset


def deployable(model, val):
    return [
        icbm.Random(seed=3),
        icbm.Random(seed=3, per_instance=False),
        icbm.StaticOrder(list(range(len(model.groups)))[::-1]),
        icbm.Uncertainty(),
        icbm.Uncertainty(measure="confidence"),
        icbm.Influence(),
        icbm.Influence(metric="kl"),
        icbm.Influence(metric="entropy_change", reduction="expected"),
        icbm.CooP(beta=10.0),
        icbm.CooP(beta=1.0, gamma=0.3),
        icbm.ExpectedInformationGain(),
    ]


@pytest.mark.parametrize("t", [0, 2, 5])
def test_no_peeking_flipping_unasked_truth_and_label_keeps_next_query(synthetic, t):
    _, model, _, va, te = synthetic
    torch.manual_seed(t)
    for pol in deployable(model, va):
        base = icbm.evaluate_interventions(model, te, pol, t + 1)
        asked = torch.zeros_like(te.c, dtype=torch.bool)
        member = model.groups.membership().bool()
        for s in range(t):
            asked |= member[torch.as_tensor(base.queries[:, s])]
        flip = ~asked
        c2 = torch.where(flip, 1 - te.c, te.c)
        y2 = (te.y + 1 + torch.randint(0, 5, te.y.shape)) % 6
        vis2 = torch.where(flip, torch.rand(te.c.shape) < 0.5, te.visible)
        other = ConceptDataset(te.x, c2, y2, vis2, te.groups)
        again = icbm.evaluate_interventions(model, other, pol, t + 1)
        assert (again.queries == base.queries).all(), pol


def test_oracle_does_peek_so_the_property_test_can_fail(synthetic):
    _, model, _, _, te = synthetic
    base = icbm.evaluate_interventions(model, te, icbm.OracleGreedy(), 1)
    other = ConceptDataset(te.x, 1 - te.c, (te.y + 1) % 6, te.visible, te.groups)
    again = icbm.evaluate_interventions(model, other, icbm.OracleGreedy(), 1)
    assert (again.queries != base.queries).any()


def batch_tolerance(scores: torch.Tensor) -> float:
    """Scores are float32. Batched and row-by-row calls run the same formulas through matmuls of
    different shapes, whose blocking changes the summation order; each score sums at most a few
    dozen products (16 concept groups x 2 outcomes x 6 classes), so the two differ by a few ulps of
    the largest term: 64 eps x max(1, |score|) bounds it with margin (eps = 1.19e-7)."""
    finite = scores[torch.isfinite(scores)]
    scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
    return 64 * torch.finfo(scores.dtype).eps * scale


def test_batch_invariance_select_on_batch_equals_row_by_row(synthetic):
    _, model, _, va, te = synthetic
    logits = icbm.predict_concept_logits(model, te)[:40]
    state = icbm.InteractionState.initial(model, logits)
    # reveal two different groups per row so rows differ in their states
    g1 = torch.arange(40) % len(model.groups)
    state = state.reveal(g1, te.c[:40])
    state = state.reveal((g1 + 3) % len(model.groups), te.c[:40])
    for pol in deployable(model, va) + [icbm.StaticGreedy.fit(model, va, n_steps=3)]:
        batched = pol.select(state)
        single = torch.cat([pol.select(state.rows(slice(i, i + 1))) for i in range(40)])
        sb = pol.scores(state)
        ss = torch.cat([pol.scores(state.rows([i])) for i in range(40)])
        assert sb.dtype == torch.float32
        assert torch.equal(torch.isinf(sb), torch.isinf(ss)), pol  # availability is exact
        tol = batch_tolerance(sb)
        torch.testing.assert_close(
            sb, ss, rtol=0, atol=tol, equal_nan=True, msg=lambda m, pol=pol: f"{pol}: {m}"
        )
        # the choice is identical, except where two groups tie to within rounding (then either is right)
        for r in (batched != single).nonzero().flatten().tolist():
            a, b = int(batched[r]), int(single[r])
            assert a >= 0 and b >= 0 and abs(float(sb[r, a] - sb[r, b])) <= 2 * tol, (pol, r, a, b)
    truth = (te.c[:40], te.y[:40], te.visible[:40])
    orc = icbm.OracleGreedy()
    single = torch.cat(
        [orc.select(state.rows([i]), truth=tuple(t[i : i + 1] for t in truth)) for i in range(40)]
    )
    assert torch.equal(orc.select(state, truth=truth), single)


def test_evaluation_chunking_does_not_change_anything(synthetic):
    _, model, _, _, te = synthetic
    a = icbm.evaluate_interventions(model, te, icbm.CooP(), 4, batch_size=1024)
    b = icbm.evaluate_interventions(model, te, icbm.CooP(), 4, batch_size=7)
    assert (a.queries == b.queries).all() and (a.accuracy == b.accuracy).all()


def test_never_reask_and_full_budget_predicts_like_true_concepts(synthetic):
    _, model, _, va, te = synthetic
    k = len(model.groups)
    logits = icbm.predict_concept_logits(model, te)
    truth_pred = icbm.predicted_class(model.head(model.tau(te.c)))
    truth_acc = float((truth_pred == te.y).float().mean())
    finals = []
    for pol in deployable(model, va) + [icbm.OracleGreedy(), icbm.StaticGreedy.fit(model, va)]:
        curve = icbm.evaluate_interventions(model, te, pol, k, concept_logits=logits)
        q = torch.as_tensor(curve.queries)
        assert (q >= 0).all()
        assert all(len(set(row.tolist())) == k for row in q), pol  # t steps -> t distinct groups
        assert (curve.correct[:, -1] == (truth_pred == te.y).numpy()).all(), pol
        assert curve.accuracy[-1] == pytest.approx(truth_acc, abs=1e-7)
        finals.append(curve.correct[:, -1])
        assert curve.accuracy[0] == pytest.approx(
            float((icbm.predicted_class(model.predict_label(logits)) == te.y).float().mean())
        )
    assert all((f == finals[0]).all() for f in finals)


def test_full_reveal_prediction_equals_head_of_tau_true_concepts(synthetic):
    _, model, _, _, te = synthetic
    logits = icbm.predict_concept_logits(model, te)
    state = icbm.InteractionState.initial(model, logits)
    for _ in range(len(model.groups)):
        state = state.reveal(icbm.CooP().select(state), te.c)
    assert torch.equal(state.label_logits, model.head(model.tau(te.c)))
    assert (icbm.CooP().select(state) == -1).all()  # nothing left to ask


def test_reveal_refuses_to_reask(synthetic):
    _, model, _, _, te = synthetic
    state = icbm.InteractionState.initial(model, icbm.predict_concept_logits(model, te)[:3])
    state = state.reveal(torch.tensor([0, 1, 2]), te.c[:3])
    with pytest.raises(ValueError, match="asked twice"):
        state.reveal(torch.tensor([0, 5, 6]), te.c[:3])


def test_state_never_holds_unrevealed_values(synthetic):
    _, model, _, _, te = synthetic
    logits = icbm.predict_concept_logits(model, te)[:5]
    mask = torch.zeros(5, model.n_concepts, dtype=torch.bool)
    state = icbm.InteractionState(
        model, logits, mask, te.c[:5], torch.zeros(5, 16, dtype=torch.bool), torch.zeros(5)
    )
    assert state.revealed_values.abs().sum() == 0


def test_cost_budget_is_respected(synthetic):
    _, model, _, _, te = synthetic
    groups = icbm.ConceptGroups(
        model.groups.groups, costs={n: float(1 + i % 4) for i, n in enumerate(model.groups.names)}
    )
    m2 = icbm.ConceptBottleneckModel(model.concept_encoder, model.label_predictor, groups)
    curve = icbm.evaluate_interventions(m2, te, icbm.CooP(gamma=0.1), 8, cost_budget=5.0)
    assert curve.spent.max() <= 5.0
    assert (curve.queries == -1).any()  # some rows ran out of budget before 8 questions
    free = icbm.evaluate_interventions(m2, te, icbm.CooP(gamma=0.1), 8)
    acc = free.accuracy_at_cost([0.0, 1e9])
    assert acc[0] == pytest.approx(free.accuracy[0]) and acc[1] == pytest.approx(free.accuracy[-1])


def test_unknown_answers_keep_prediction_or_set_zero(synthetic):
    _, model, _, _, te = synthetic
    hidden = ConceptDataset(te.x, te.c, te.y, torch.zeros_like(te.visible), te.groups)
    keep = icbm.evaluate_interventions(model, hidden, icbm.CooP(), 3)
    assert (keep.accuracy == keep.accuracy[0]).all()  # nothing known: the prediction never changes
    zero = icbm.evaluate_interventions(model, hidden, icbm.CooP(), 3, unknown="set_zero")
    assert zero.accuracy[3] != zero.accuracy[0]
