"""Bad input raises clear errors that name the problem (issue deliverable 7)."""

import pytest
import torch
from torch import nn

import icbm
from icbm.data import ConceptDataset


def test_concept_count_mismatch(synthetic):
    _, model, _, _, te = synthetic
    with pytest.raises(ValueError, match="concept count mismatch"):
        icbm.evaluate_interventions(model, (te.x, te.c[:, :10], te.y), icbm.CooP(), 2)
    bad = icbm.ConceptBottleneckModel(nn.Linear(64, 12), nn.Linear(16, 6), model.groups)
    with pytest.raises(ValueError, match="concept count mismatch"):
        bad.encode(te.x[:2])
    with pytest.raises(ValueError, match="concept count mismatch"):
        ConceptDataset(te.x, te.c[:, :10], te.y, None, model.groups)
    with pytest.raises(ValueError, match="concept count mismatch"):
        icbm.InteractionState.initial(model, torch.zeros(3, 15))


def test_unknown_group():
    with pytest.raises(ValueError, match="unknown group"):
        icbm.ConceptGroups({"a": [0], "b": [1]}, costs={"c": 2.0})
    with pytest.raises(ValueError, match="unknown group"):
        icbm.ConceptGroups({"a": [0], "b": [1]}, kinds={"z": "binary"})
    g = icbm.ConceptGroups({"a": [0], "b": [1]})
    with pytest.raises(KeyError, match="unknown group 'zz'"):
        g.index("zz")
    with pytest.raises(ValueError, match="unknown kind"):
        icbm.ConceptGroups({"a": [0, 1]}, kinds={"a": "ordinal"})


def test_malformed_groups():
    with pytest.raises(ValueError, match="more than one group"):
        icbm.ConceptGroups({"a": [0, 1], "b": [1]})
    with pytest.raises(ValueError, match="belong to no group"):
        icbm.ConceptGroups({"a": [0], "b": [2]})
    with pytest.raises(ValueError, match="'binary' but has 2"):
        icbm.ConceptGroups({"a": [0, 1]}, kinds={"a": "binary"})
    with pytest.raises(ValueError, match="cost must be > 0"):
        icbm.ConceptGroups({"a": [0]}, costs={"a": 0})


def test_budget_larger_than_groups(synthetic):
    _, model, _, _, te = synthetic
    with pytest.raises(ValueError, match="larger than the number of concept groups"):
        icbm.evaluate_interventions(model, te, icbm.CooP(), 17)
    with pytest.raises(ValueError, match="larger than the number of concept groups"):
        icbm.InteractiveDialogue(model, te.x[0], budget=17)


def test_answers_outside_values(synthetic, categorical):
    _, model, _, _, te = synthetic
    d = icbm.InteractiveDialogue(model, te.x[0], budget=3)
    q = d.next_query()
    with pytest.raises(ValueError, match="must be 0 or 1"):
        d.answer(q, [2])
    with pytest.raises(ValueError, match="expects 1 value"):
        d.answer(q, [0, 1])
    with pytest.raises(KeyError, match="unknown group"):
        d.answer("no-such-group", [1])
    _, cmodel, _, _, cte = categorical
    d = icbm.InteractiveDialogue(cmodel, cte.x[0], budget=3)
    q = d.next_query()
    with pytest.raises(ValueError, match="exactly one member must be 1"):
        d.answer(q, [1, 1, 0, 0])
    d.answer(q, [0, 0, 1, 0])
    with pytest.raises(ValueError, match="already answered"):
        d.answer(q, [0, 0, 1, 0])


def test_bad_configuration():
    g = icbm.ConceptGroups.singletons(3)
    with pytest.raises(ValueError, match="unknown mode"):
        icbm.ConceptBottleneckModel(nn.Identity(), nn.Linear(3, 2), g, mode="end2end")
    with pytest.raises(ValueError, match="must see probabilities"):
        icbm.ConceptBottleneckModel(nn.Identity(), nn.Linear(3, 2), g, bottleneck="logits")
    with pytest.raises(ValueError, match="unknown influence metric"):
        icbm.Influence(metric="mutual")
    with pytest.raises(ValueError, match="unknown group_mode"):
        icbm.build_candidates(g, "v3")
    with pytest.raises(ValueError, match="multilabel"):
        icbm.build_candidates(icbm.ConceptGroups({"a": [0, 1]}), "categorical")
    m = icbm.ConceptBottleneckModel(nn.Identity(), nn.Linear(3, 2), g, mode="joint")
    with pytest.raises(RuntimeError, match="calibrate_percentiles"):
        m.intervene(torch.zeros(1, 3), torch.ones(1, 3), torch.ones(1, 3))


def test_oracle_refused_in_dialogue_and_needs_truth(synthetic):
    _, model, _, _, te = synthetic
    with pytest.raises(ValueError, match="cannot drive a real dialogue"):
        icbm.InteractiveDialogue(model, te.x[0], policy=icbm.OracleGreedy())
    state = icbm.InteractionState.initial(model, icbm.predict_concept_logits(model, te)[:2])
    with pytest.raises(ValueError, match="needs truth"):
        icbm.OracleGreedy().select(state)
