"""Issue 3 deliverable 7: clear errors, never silent wrong numbers."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from xquant import KIVICache, KIVIConfig, XQuantCache, XQuantConfig


def test_unsupported_architecture():
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)).eval()
    with pytest.raises(ValueError, match="unsupported architecture 'gpt2'"):
        XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=32))


def test_sliding_window_rejected(tiny):
    model = tiny("mistral", sliding_window=16)
    with pytest.raises(ValueError, match="sliding-window"):
        XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=32))


@pytest.mark.parametrize("bits", [1, 5, 6, 32, 4.0, True])
def test_bits_outside_supported_set(bits):
    with pytest.raises(ValueError, match="not supported"):
        XQuantConfig(bits=bits)
    with pytest.raises(ValueError, match="not supported"):
        KIVIConfig(bits=bits)


def test_group_size_not_dividing_hidden(tiny):
    with pytest.raises(ValueError, match="group_size=48 does not divide the hidden size"):
        XQuantCache.from_model(tiny("llama"), XQuantConfig(bits=4, group_size=48))
    with pytest.raises(ValueError, match="does not divide the KV width"):
        KIVICache.from_model(tiny("llama"), KIVIConfig(bits=2, group_size=48))


def test_cache_reused_for_different_batch_size(tiny):
    model = tiny("llama")
    with XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=32)) as cache:
        model(input_ids=torch.randint(0, 256, (2, 5)), past_key_values=cache, use_cache=True)
        with pytest.raises(ValueError, match="batch of 2 sequences but was called with batch size 3"):
            model(input_ids=torch.randint(0, 256, (3, 1)), past_key_values=cache, use_cache=True)


def test_triton_backend_on_unservable_device(tiny, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="cannot serve a model on cpu"):
        XQuantCache.from_model(tiny("llama"), XQuantConfig(bits=4, group_size=32, backend="triton"))


def test_base_layer_out_of_range(tiny):
    with pytest.raises(ValueError, match="base_layer=5"):
        XQuantCache.from_model(
            tiny("llama"), XQuantConfig(bits=4, group_size=32, cross_layer=True, base_layer=5)
        )


def test_bad_config_values():
    with pytest.raises(ValueError, match="mode"):
        XQuantConfig(mode="mla")
    with pytest.raises(ValueError, match="residual_length"):
        XQuantConfig(residual_length=-1)
    with pytest.raises(ValueError, match="group_size"):
        XQuantConfig(group_size=0)


# test_simulated_cache_cannot_be_extended lives in test_trust.py (it no longer sets the flag by hand)


def test_detached_cache_says_so(tiny):
    model = tiny("llama")
    cache = XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=32))
    cache.detach()
    with pytest.raises(RuntimeError, match="hooks are not attached"):
        model(input_ids=torch.randint(0, 256, (1, 5)), past_key_values=cache, use_cache=True)
