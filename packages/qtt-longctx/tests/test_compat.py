"""`cache=` next to `past_key_values=` (issue 20.2): a model whose forward only takes `cache=` works."""

import torch
from torch import nn

from paperworks_shared.models import tiny_causal_lm
from qtt_longctx import QTTConfig, adapt
from qtt_longctx.compat import cache_keyword


class CacheKeywordOnly(nn.Module):
    """A causal LM with transformers' newer spelling: `forward(..., cache=...)`, no `past_key_values`."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.model = inner.model  # decoder layers, where qTTT finds q_proj
        self.config = inner.config
        self.calls = 0

    @property
    def device(self):
        return self.inner.device

    def forward(self, input_ids, cache=None, use_cache=True, position_ids=None, output_attentions=False):
        self.calls += 1
        return self.inner(
            input_ids=input_ids,
            past_key_values=cache,
            use_cache=use_cache,
            position_ids=position_ids,
            output_attentions=output_attentions,
        )


def test_cache_keyword_follows_the_forward_signature():
    inner = tiny_causal_lm("llama")
    assert cache_keyword(inner) == "past_key_values"
    assert cache_keyword(CacheKeywordOnly(inner)) == "cache"


def test_adapt_and_generate_through_a_cache_keyword_model(ids):
    inner = tiny_causal_lm("llama", seed=1)
    wrapped = CacheKeywordOnly(inner)
    cfg = QTTConfig(steps=2, span_len=8, lr=1e-3, seed=3)
    with adapt(wrapped, ids, cfg) as s:
        got = s.generate(3)
        losses = list(s.losses)
    with adapt(inner, ids, cfg) as s:
        want = s.generate(3)
        want_losses = list(s.losses)
    assert wrapped.calls >= 1 + 2 + 3  # prefill, two span steps, three decode steps, all with cache=
    assert got.tokens == want.tokens and losses == want_losses
    torch.testing.assert_close(got.first_logits, want.first_logits)
