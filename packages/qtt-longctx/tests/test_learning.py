"""Acceptance: the span loss on the context decreases; the fp32 delta survives bf16 weights; the first
answer token goes through the adapted query projections."""

import torch

from paperworks_shared.models import tiny_causal_lm
from qtt_longctx import QTTConfig, QueryDelta, adapt

FIXED = [(0, 24), (30, 24), (60, 24)]


def _mean_loss(session):
    with torch.no_grad():
        return sum(session.span_loss(t, k).item() for t, k in FIXED) / len(FIXED)


def test_context_loss_decreases(structured_ids):
    model = tiny_causal_lm("llama", seed=0)
    ids = structured_ids(96)
    with adapt(model, ids, QTTConfig(steps=0)) as s:
        before = _mean_loss(s)
    with adapt(model, ids, QTTConfig(steps=20, span_len=24, lr=3e-2)) as s:
        after = _mean_loss(s)
        first, last = sum(s.losses[:4]) / 4, sum(s.losses[-4:]) / 4
    assert after < before - 0.05
    assert last < first


def test_bf16_update_is_not_rounded_away(structured_ids):
    model = tiny_causal_lm("llama", seed=0, dtype=torch.bfloat16)
    ids = structured_ids(64)
    w0 = [layer.self_attn.q_proj.weight.detach().clone() for layer in model.model.layers]
    with adapt(model, ids, QTTConfig(steps=2, span_len=16, lr=1e-5)) as s:
        for j, d in enumerate(s.delta.delta):
            assert d.dtype == torch.float32 and float(d.detach().abs().max()) > 0
            eff = s.delta.effective_weight(j)
            assert not torch.equal(eff, w0[j].float())
            # the same update written into the bf16 weight would (mostly) vanish
            rounded = (w0[j].float() + d.detach()).to(torch.bfloat16)
            assert (rounded == w0[j]).float().mean() > 0.5
    for j, layer in enumerate(model.model.layers):
        assert torch.equal(layer.self_attn.q_proj.weight, w0[j])


def _constant_kv_last_logits(model, ids, session):
    """Reference for the first answer token: a full forward with the session's ΔW_Q applied and the
    K/V of positions < T−1 replaced by the unadapted model's (the frozen cache); the last position's
    own K/V computed by the adapted model."""
    T = ids.shape[1]
    recorded = {}

    def rec(name):
        def hook(m, a, o):
            recorded[name] = o.detach().clone()

        return hook

    projs = {
        f"{i}.{n}": getattr(layer.self_attn, n)
        for i, layer in enumerate(model.model.layers)
        for n in ("k_proj", "v_proj")
    }
    hs = [p.register_forward_hook(rec(n)) for n, p in projs.items()]
    session.delta.remove()
    with torch.no_grad():
        model(ids)
    for h in hs:
        h.remove()

    def sub(name):
        def hook(m, a, o):
            o = o.clone()
            o[:, : T - 1] = recorded[name][:, : T - 1]
            return o

        return hook

    hs = [p.register_forward_hook(sub(n)) for n, p in projs.items()]
    session.delta.attach()
    with torch.no_grad():
        out = model(ids).logits[0, -1]
    for h in hs:
        h.remove()
    return out


def test_first_answer_token_uses_adapted_queries(structured_ids):
    model = tiny_causal_lm("llama", seed=0)
    ids = structured_ids(72)
    with torch.no_grad():
        plain = model(ids).logits[0, -1]
    with adapt(model, ids, QTTConfig(steps=6, span_len=16, lr=5e-2)) as s:
        res = s.generate(1)
        ref = _constant_kv_last_logits(model, ids, s)
    torch.testing.assert_close(res.first_logits, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(res.first_logits, plain, atol=1e-3)
    assert res.tokens[0] == int(torch.argmax(ref))


def test_lora_starts_at_zero_update():
    model = tiny_causal_lm("llama", seed=0)
    d = QueryDelta(model, mode="lora", lora_rank=4)
    for j in range(len(d.lora_a)):
        assert float(d.weight_update(j).abs().max()) == 0.0
