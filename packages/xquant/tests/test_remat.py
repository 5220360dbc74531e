"""Acceptance: K and V rematerialized from captured X equal what the unmodified model computed
(DESIGN.md §3.4 test 3, "spy cache")."""

import pytest
import torch
from transformers import DynamicCache

from xquant.adapters import apply_rope, attention_specs, invert_rope, rotary_module
from xquant.hooks import CaptureHooks
from xquant.svd import latent_factors


class SpyCache(DynamicCache):
    """Records the (post-RoPE) key/value states every layer hands to `update`."""

    def __init__(self, config):
        super().__init__(config=config)
        self.seen = {}

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.seen.setdefault(layer_idx, []).append((key_states.clone(), value_states.clone()))
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)


@pytest.mark.parametrize("arch", ["llama", "llama-gqa", "mistral", "qwen2", "qwen3"])
def test_remat_from_captured_x_matches_model(tiny, arch):
    model = tiny(arch)
    specs = attention_specs(model)
    hooks = CaptureHooks({s.layer_idx: s.module for s in specs})
    ids = torch.randint(0, 256, (2, 11), generator=torch.Generator().manual_seed(0))
    attn = torch.ones_like(ids)
    attn[0, :3] = 0
    spy = SpyCache(model.config)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=attn, past_key_values=spy, use_cache=True)
        caps = dict(hooks.slots)
        rot = rotary_module(model)
        for s in specs:
            cap = caps[s.layer_idx]
            k_true, v_true = spy.seen[s.layer_idx][0]
            pos = cap.position_ids.expand(2, -1)
            cos, sin = rot(cap.x, pos)
            k = apply_rope(s.remat_k(cap.x), cos, sin)
            torch.testing.assert_close(k, k_true, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(s.remat_v(cap.x), v_true, atol=1e-6, rtol=1e-5)
            # and pre-RoPE keys are recoverable exactly (KIVI* path)
            torch.testing.assert_close(invert_rope(k_true, cos, sin), s.remat_k(cap.x), atol=1e-5, rtol=1e-5)
            # GQA latent: (X U_k) M_k == X W_k
            lk = latent_factors(s.k_proj.weight.T, torch.float32)
            kl = s.finish_k(cap.x @ lk.u @ lk.m + (s.k_proj.bias if s.k_proj.bias is not None else 0))
            torch.testing.assert_close(apply_rope(kl, cos, sin), k_true, atol=1e-5, rtol=1e-4)
    hooks.remove()


def test_x_is_post_norm_not_residual(tiny):
    """The captured X is input_layernorm(h): RMS of X/γ is 1 per token (the residual h is not)."""
    model = tiny("llama")
    specs = attention_specs(model)
    hooks = CaptureHooks({s.layer_idx: s.module for s in specs})
    with torch.no_grad():
        model(input_ids=torch.randint(0, 256, (1, 6)))
    layer = model.model.layers[1]
    x = hooks.slots[1].x / layer.input_layernorm.weight
    torch.testing.assert_close(x.pow(2).mean(-1), torch.ones(1, 6), atol=1e-4, rtol=1e-4)
    hooks.remove()
