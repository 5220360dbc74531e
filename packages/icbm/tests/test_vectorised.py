"""The low-rank linear-head path equals the general batched head path, for every convention and format."""

import pytest
import torch

import icbm


@pytest.mark.parametrize("mode", ["v1", "v2", "categorical"])
@pytest.mark.parametrize("fmt", ["binary", "percentile"])
def test_linear_fast_path_equals_general_path(categorical, mode, fmt):
    _, model, tr, _, te = categorical
    m = icbm.ConceptBottleneckModel(
        model.concept_encoder,
        model.label_predictor,
        model.groups,
        mode="sequential",
        bottleneck="probs",
        intervention_format=fmt,
    )
    m.calibrate_percentiles(icbm.predict_concept_logits(m, tr))
    logits = icbm.predict_concept_logits(m, te)[:64]
    st = icbm.InteractionState.initial(m, logits)
    st = st.reveal(torch.arange(64) % 8, te.c[:64])  # a different revealed group per row
    cands = icbm.build_candidates(m.groups, mode)
    fast = icbm.candidate_label_logits(m, st.bottleneck, cands, use_linear=True)
    slow = icbm.candidate_label_logits(
        m, st.bottleneck, cands, use_linear=False, max_elems=5000
    )  # many chunks
    assert torch.allclose(fast, slow, atol=1e-5)
    for pol_cls in (icbm.Influence, icbm.ExpectedInformationGain):
        a = pol_cls(group_mode=mode, use_linear=True).scores(st)
        b = pol_cls(group_mode=mode, use_linear=False).scores(st)
        assert torch.allclose(a, b, atol=1e-5, equal_nan=True)


def test_candidate_weights_are_distributions(categorical):
    _, model, _, _, te = categorical
    p = torch.sigmoid(icbm.predict_concept_logits(model, te)[:20])
    for mode in ("v1", "v2", "categorical"):
        c = icbm.build_candidates(model.groups, mode)
        w = c.weights(p)
        fam = torch.zeros(20, c.n_families).index_add_(1, c.family, w)
        assert torch.allclose(fam, torch.ones_like(fam), atol=1e-6)
        assert (w >= 0).all()
    cat = icbm.build_candidates(model.groups, "categorical")
    assert len(cat.group) == 32  # 8 groups x 4 one-hot configurations
    assert len(icbm.build_candidates(model.groups, "v1").group) == 16
    assert len(icbm.build_candidates(model.groups, "v2").group) == 64
