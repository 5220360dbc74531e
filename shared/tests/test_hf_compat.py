"""The cache keyword follows the installed transformers (past_key_values <= 5.23, cache >= 5.24)."""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache

from paperworks_shared.hf_compat import cache_kwarg, cache_kwargs, output_cache
from paperworks_shared.models import tiny_causal_lm


class _New(torch.nn.Module):
    def forward(self, input_ids=None, cache=None, use_cache=None):
        return {"cache": cache, "past_key_values": None}


class _Old(torch.nn.Module):
    def forward(self, input_ids=None, past_key_values=None, use_cache=None):
        return {"past_key_values": past_key_values}


def test_keyword_follows_the_signature():
    assert cache_kwarg(_New()) == "cache" and cache_kwarg(_Old()) == "past_key_values"
    marker = object()
    assert _New()(**cache_kwargs(_New(), marker))["cache"] is marker
    assert output_cache(_Old()(**cache_kwargs(_Old(), marker))) is marker
    assert output_cache(_New()(**cache_kwargs(_New(), marker))) is marker


def test_the_installed_transformers_model_uses_the_cache_it_is_given():
    model = tiny_causal_lm("llama", seed=0).eval()
    params = inspect.signature(model.forward).parameters
    assert cache_kwarg(model) in params
    ids = torch.randint(0, 200, (1, 12))
    with torch.no_grad():
        full = model(input_ids=ids).logits[:, -1]
        cache = DynamicCache(config=model.config)
        out = model(input_ids=ids[:, :-1], use_cache=True, **cache_kwargs(model, cache))
        assert output_cache(out) is cache and cache.get_seq_length() == 11
        step = model(input_ids=ids[:, -1:], use_cache=True, **cache_kwargs(model, cache)).logits[:, -1]
    torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)
