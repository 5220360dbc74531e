"""Acceptance: with lr=0 the span forward through the frozen cache equals the full forward (positions,
mask, RoPE, off-by-one), for every supported architecture, attention kernel and RoPE variant."""

import pytest
import torch

from paperworks_shared.models import tiny_causal_lm
from qtt_longctx import QTTConfig, adapt

ARCHS = ["llama", "llama-gqa", "mistral", "qwen2", "qwen3"]
SPANS = [(0, 12), (5, 16), (20, 27)]  # (start, len); the last one ends at the last cached token


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_span_logits_equal_full_forward(arch, attn, ids):
    model = tiny_causal_lm(arch, seed=1, attn_implementation=attn)
    with torch.no_grad():
        full = model(ids).logits
    with adapt(model, ids, QTTConfig(steps=0)) as s:
        assert s.cache.length == ids.shape[1] - 1
        for t, k in SPANS + [(0, ids.shape[1] - 1)]:
            got = s.span_logits(t, k)
            torch.testing.assert_close(got, full[:, t : t + k], atol=1e-5, rtol=1e-5)
        # first answer token: the last prompt token decoded from the cache = full forward's last logits
        torch.testing.assert_close(s.next_token_logits(), full[0, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "linear", "factor": 2.0},
        {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 1024},
    ],
)
def test_equivalence_with_scaled_rope(rope, ids):
    rope = {"rope_theta": 10000.0, **rope}
    model = tiny_causal_lm("llama", seed=2, rope_parameters=rope)
    assert model.config.rope_parameters["rope_type"] == rope["rope_type"]
    with torch.no_grad():
        full = model(ids).logits
    with adapt(model, ids, QTTConfig(steps=0)) as s:
        for t, k in SPANS:
            torch.testing.assert_close(s.span_logits(t, k), full[:, t : t + k], atol=1e-5, rtol=1e-5)


def test_lr_zero_steps_change_nothing(ids):
    """lr=0 with real steps (AdamW, weight decay, clipping): the span loss equals the full-forward NLL."""
    model = tiny_causal_lm("qwen3", seed=3)
    with torch.no_grad():
        full = model(ids).logits
    cfg = QTTConfig(steps=3, span_len=10, lr=0.0, weight_decay=0.01)
    with adapt(model, ids, cfg) as s:
        for (t, k), loss in zip(s.spans, s.losses):
            ref = torch.nn.functional.cross_entropy(full[0, t : t + k], ids[0, t + 1 : t + k + 1])
            assert abs(loss - ref.item()) < 1e-5
        assert all(float(d.abs().max()) == 0.0 for d in s.delta.delta)


def test_span_loss_targets_are_shifted_by_one(ids):
    """Off-by-one guard: the loss uses targets ids[t+1:t+k+1], not ids[t:t+k]."""
    model = tiny_causal_lm("llama", seed=4)
    with torch.no_grad():
        full = model(ids).logits
    with adapt(model, ids, QTTConfig(steps=0)) as s, torch.no_grad():
        loss = s.span_loss(7, 9).item()
    right = torch.nn.functional.cross_entropy(full[0, 7:16], ids[0, 8:17]).item()
    wrong = torch.nn.functional.cross_entropy(full[0, 7:16], ids[0, 7:16]).item()
    assert abs(loss - right) < 1e-5 and abs(loss - wrong) > 1e-3
