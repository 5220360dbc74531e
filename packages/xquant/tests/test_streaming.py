"""Acceptance: 2-bit decode tokens are really quantized and packed, nbytes() matches the formula,
streaming one token at a time gives the one-shot codes (DESIGN.md §3.4 tests 6-7)."""

import pytest
import torch
from transformers import DynamicCache

from xquant import KIVICache, KIVIConfig, XQuantCache, XQuantConfig
from xquant.accounting import expected_xquant_nbytes
from xquant.adapters import attention_specs
from xquant.hooks import CaptureHooks
from xquant.quant import quantize, unpack_bits
from xquant.store import TokenStore


@pytest.mark.parametrize("axis,g", [("token", 16), ("channel", 8)])
def test_streaming_equals_one_shot_codes(axis, g):
    x = torch.randn(2, 37, 32, generator=torch.Generator().manual_seed(0))
    one = TokenStore(3, g, axis, residual_length=5)
    one.push(x)
    f = one.take_flush()
    one.add(f)
    stream = TokenStore(3, g, axis, residual_length=5)
    for t in range(37):
        stream.push(x[:, t : t + 1])
        f = stream.take_flush()
        if f is not None:
            stream.add(f)
    assert one.n_quantized == stream.n_quantized == 32  # channel: whole groups only; token: all but R=5
    assert torch.equal(one.q.codes, stream.q.codes)
    assert torch.equal(one.q.scale, stream.q.scale) and torch.equal(one.q.zero, stream.q.zero)
    assert torch.equal(one.window, stream.window)
    direct = quantize(x[:, : one.n_quantized], 3, g, axis)
    assert torch.equal(direct.codes, one.q.codes)


def test_per_channel_never_quantizes_one_token_groups():
    s = TokenStore(2, 8, "channel", residual_length=0)
    for _ in range(7):
        s.push(torch.randn(1, 1, 16))
        assert s.take_flush() is None  # 7 tokens < one group: stay full precision
    s.push(torch.randn(1, 1, 16))
    assert s.take_flush().shape[1] == 8


def test_cache_streaming_equals_prefill_codes(tiny):
    """Layer-0 X depends only on the tokens: prefill-at-once and token-by-token give identical codes."""
    model = tiny("llama-gqa")  # latent mode: per-channel X·U_k and per-token X·U_v
    ids = torch.randint(0, 256, (1, 22), generator=torch.Generator().manual_seed(2))
    cfg = XQuantConfig(bits=2, group_size=8, residual_length=4)
    with torch.no_grad(), XQuantCache.from_model(model, cfg) as a, XQuantCache.from_model(model, cfg) as b:
        model(input_ids=ids, past_key_values=a, use_cache=True)
        for t in range(22):
            model(input_ids=ids[:, t : t + 1], past_key_values=b, use_cache=True)
        la, lb = a.layers[0], b.layers[0]
        assert la.ks.n_quantized == 16 and la.vs.n_quantized == 18
        for sa, sb in ((la.ks, lb.ks), (la.vs, lb.vs)):
            assert torch.equal(sa.q.codes, sb.q.codes)
            assert torch.equal(sa.q.scale, sb.q.scale)


def test_two_bit_decode_tokens_really_quantized_and_nbytes_formula(tiny):
    model = tiny("llama", num_hidden_layers=3)
    B, P, N, R, G, d, L = 2, 10, 30, 4, 16, 64, 3
    ids = torch.randint(0, 256, (B, P), generator=torch.Generator().manual_seed(3))
    cache = XQuantCache.from_model(model, XQuantConfig(bits=2, group_size=G, residual_length=R))
    out = model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False, past_key_values=cache)
    cache.detach()
    T = out.shape[1] - 1  # the last generated token is never fed back
    assert cache.get_seq_length() == T
    layer0 = cache.layers[0].xs
    assert layer0.q.codes.dtype == torch.uint8 and layer0.q.codes.shape == (B, T - R, d * 2 // 8)
    assert layer0.n_window == R
    # true layer-0 X of every token (depends only on tokens), from a plain forward
    specs = attention_specs(model)
    hooks = CaptureHooks({s.layer_idx: s.module for s in specs})
    with torch.no_grad():
        model(input_ids=out[:, :T], past_key_values=DynamicCache(config=model.config), use_cache=True)
    x_true = hooks.slots[0].x
    hooks.remove()
    xhat = layer0.dequant(torch.float32)
    decode = slice(P, T - R)  # tokens generated at decode time, now outside the window
    err = (xhat[:, decode] - x_true[:, decode]).abs()
    assert err.max() > 1e-3  # really quantized ...
    codes = unpack_bits(layer0.q.codes, 2, d)
    assert codes.max() == 3 and codes.min() == 0  # ... to 2-bit codes
    k_err = (specs[0].remat_k(xhat[:, decode]) - specs[0].remat_k(x_true[:, decode])).abs().max()
    assert k_err > 1e-3
    torch.testing.assert_close(layer0.window, x_true[:, T - R : T])  # window is exact
    # bytes: hand formula = layers x batch x [quantized: packed codes + fp16 scale/zero per group;
    # window: fp32 X] + int32 position per token
    per_tok_q = d * 2 // 8 + (d // G) * 2 * 2
    hand = L * B * ((T - R) * per_tok_q + R * d * 4) + B * T * 4
    assert cache.nbytes() == hand == expected_xquant_nbytes(cache, B, T)


@pytest.mark.parametrize(
    "cfg",
    [
        XQuantConfig(bits=3, group_size=8, residual_length=5),
        XQuantConfig(
            bits=4, group_size=16, residual_length=3, cross_layer=True, base_layer=1, early_layers=1
        ),
        XQuantConfig(
            bits=2, group_size=16, residual_length=2, cross_layer=True, base_layer=0, mode="gqa_latent"
        ),
    ],
)
def test_nbytes_matches_formula_gqa_and_cl(tiny, cfg):
    model = tiny("llama-gqa", num_hidden_layers=3)
    ids = torch.randint(0, 256, (2, 13), generator=torch.Generator().manual_seed(4))
    with XQuantCache.from_model(model, cfg) as cache:
        out = model.generate(
            ids, max_new_tokens=20, min_new_tokens=20, do_sample=False, past_key_values=cache
        )
        T = out.shape[1] - 1
        assert cache.nbytes() == expected_xquant_nbytes(cache, 2, T)
        rep = cache.memory_report()
        assert rep["fp16_kv_bytes"] == 3 * 2 * 32 * 2 * 2 * T


def test_kivi_really_quantizes(tiny):
    model = tiny("llama")
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(5))
    with KIVICache.from_model(model, KIVIConfig(bits=2, group_size=8, residual_length=4)) as cache:
        model.generate(ids, max_new_tokens=20, min_new_tokens=20, do_sample=False, past_key_values=cache)
        layer = cache.layers[0]
        assert layer.ks.q.codes.dtype == torch.uint8 and layer.ks.n_quantized % 8 == 0
        assert layer.vs.n_window == 4
