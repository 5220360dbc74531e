"""Issue 21.2: FlexAttention with a BlockMask cached per (mask kind, N, P, window), shared across layers;
padding on the flex and sdpa paths; compiled flex equals the reference; CPU training gives a clear error."""

import pytest
import torch

import iha_attn.functional as fn
from iha_attn import IHAConfig, InterleavedHeadAttention
from iha_attn.functional import iha_attention


def _count_block_masks(monkeypatch):
    import torch.nn.attention.flex_attention as fa

    calls = []
    real = fa.create_block_mask

    def spy(*a, **kw):
        calls.append(a[3:5])
        return real(*a, **kw)

    monkeypatch.setattr(fa, "create_block_mask", spy)
    fn._BLOCK_MASKS.clear()
    return calls


def test_block_mask_built_once_and_shared_across_layers(monkeypatch):
    torch.manual_seed(0)
    cfg = IHAConfig(hidden_size=32, num_heads=4, num_pseudo_heads=2, mask_mode="token_causal", backend="flex")
    layers = [InterleavedHeadAttention(cfg, layer_idx=i).eval() for i in range(3)]
    eager = InterleavedHeadAttention(IHAConfig(**{**cfg.to_dict(), "backend": "eager"})).eval()
    eager.load_state_dict(layers[0].state_dict())

    def stack(x):
        for layer in layers:
            x = x + layer(x)[0]
        return x

    x = torch.randn(2, 9, 32)
    calls = _count_block_masks(monkeypatch)
    with torch.no_grad():
        a = stack(x)
        b = stack(x)
        assert calls == [(18, 18)]  # one BlockMask for 3 layers x 2 forwards (virtual length 9·2)
        stack(x[:, :7])
        assert calls == [(18, 18), (14, 14)]  # a new length is a new key
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(layers[0](x)[0], eager(x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mask,window", [("token_causal", None), ("flat_causal", 3), ("token_causal", 2)])
def test_flex_cached_mask_keys_differ_by_kind_and_window(mask, window, monkeypatch):
    calls = _count_block_masks(monkeypatch)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 8, 4, generator=g) for _ in range(3))
    a = torch.randn(2, 2, 2, generator=g)
    R = torch.randn(2, 4, generator=g)
    with torch.no_grad():
        out = iha_attention(q, k, v, a, a, a, R, mask_mode=mask, window=window, backend="flex")
        again = iha_attention(q, k, v, a, a, a, R, mask_mode=mask, window=window, backend="flex")
    ref = iha_attention(q, k, v, a, a, a, R, mask_mode=mask, window=window, backend="eager")
    assert len(calls) == 1
    key = next(iter(fn._BLOCK_MASKS))
    assert key[:5] == (mask, 8, 8, 2, window)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, out)


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_padding_on_both_paths(backend):
    torch.manual_seed(0)
    cfg = IHAConfig(
        hidden_size=32, num_heads=4, num_kv_heads=2, num_pseudo_heads=2, window=3, backend=backend
    )
    layer = InterleavedHeadAttention(cfg).eval()
    eager = InterleavedHeadAttention(IHAConfig(**{**cfg.to_dict(), "backend": "eager"})).eval()
    eager.load_state_dict(layer.state_dict())
    x = torch.randn(2, 9, 32)
    keep = torch.ones(2, 9, dtype=torch.long)
    keep[1, :4] = 0  # left padding
    with torch.no_grad():
        out, _ = layer(x, attention_mask=keep)
        ref, _ = eager(x, attention_mask=keep)
        row, _ = layer(x[1:, 4:])  # the padded row alone, without its pads
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # RoPE and the masks are relative, so the real tokens of the padded row equal the row run alone
    torch.testing.assert_close(out[1:, 4:], row, atol=1e-5, rtol=1e-5)


def test_flex_cpu_training_is_a_clear_error():
    layer = InterleavedHeadAttention(IHAConfig(hidden_size=16, num_heads=2, backend="flex"))
    with pytest.raises(RuntimeError, match="backend='sdpa'"):
        layer(torch.randn(1, 4, 16))[0].sum().backward()


@pytest.mark.slow  # inductor's CPU codegen for flex takes ~15-40 s
def test_compiled_flex_matches_eager(monkeypatch):
    monkeypatch.setenv("IHA_FLEX_COMPILE", "1")
    fn._COMPILED_FLEX.clear()
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 16, 8, generator=g) for _ in range(3))
    a = torch.randn(2, 2, 2, generator=g)
    R = torch.randn(2, 4, generator=g)
    with torch.no_grad():
        out = iha_attention(q, k, v, a, a, a, R, mask_mode="flat_causal", window=4, backend="flex")
    assert "fn" in fn._COMPILED_FLEX  # the compiled FlexAttention really ran
    ref = iha_attention(q, k, v, a, a, a, R, mask_mode="flat_causal", window=4, backend="eager")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    fn._COMPILED_FLEX.clear()
