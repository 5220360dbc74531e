"""Issue 18 regressions on the standalone pieces: dtypes, contiguity, fp32 mixing."""

import pytest
import torch
from iha_test_oracle import iha_oracle

from iha_attn import IHAConfig, InterleavedHeadAttention, iha_attention, mix_heads


@pytest.mark.parametrize("P,N", [(1, 5), (2, 1), (1, 1), (3, 4)])
def test_mix_heads_is_contiguous(P, N):
    """P = 1 or N = 1 used to return a permuted view; SDPA then takes its slow math path."""
    x = torch.randn(2, 3, N, 8)
    out = mix_heads(x, torch.randn(3, 3, P))
    assert out.shape == (2, 3, N * P, 8)
    assert out.is_contiguous()


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_float64_is_computed_in_float64(backend):
    """Float64 inputs were silently soft-maxed in float32 on the eager path (error ~1e-7)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = r(1, 2, 9, 8) * 4, r(1, 2, 9, 8) * 4, r(1, 2, 9, 8)
    aq, ak, av, R = r(2, 2, 2), r(2, 2, 2), r(2, 2, 2), r(2, 4)
    out = iha_attention(q, k, v, aq, ak, av, R, backend=backend, mask_mode="token_causal")
    assert out.dtype == torch.float64
    ref = iha_oracle(q, k, v, aq, ak, av, R, mask="token_causal")
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)


def test_qk_norm_and_rope_in_float64():
    torch.manual_seed(0)
    cfg = IHAConfig(hidden_size=16, num_heads=2, num_pseudo_heads=2, qk_norm=True, rope_mode="virtual", backend="eager", init="normal")  # fmt: skip
    layer = InterleavedHeadAttention(cfg).double()
    with torch.no_grad():
        layer.q_norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(1, 6, 16, dtype=torch.float64) * 3
    q = layer.q_proj(x).view(1, 6, 2, 8).transpose(1, 2)
    k = layer.k_proj(x).view(1, 6, 2, 8).transpose(1, 2)
    v = layer.v_proj(x).view(1, 6, 2, 8).transpose(1, 2)

    def rms(t, w):
        return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    q, k = rms(q, layer.q_norm.weight), rms(k, layer.k_norm.weight)
    m = layer.mixing
    o = iha_oracle(q, k, v, m.alpha_q, m.alpha_k, m.alpha_v, m.R, rope="virtual")
    ref = layer.o_proj(o.reshape(1, 6, 16))
    torch.testing.assert_close(layer(x)[0], ref, atol=1e-12, rtol=1e-12)


def test_module_to_bf16_keeps_mixing_and_rope_table_fp32():
    layer = InterleavedHeadAttention(IHAConfig(hidden_size=16, num_heads=2, num_pseudo_heads=2))
    alpha, freqs = layer.mixing.alpha_q.detach().clone(), layer.inv_freq.clone()
    layer.to(torch.bfloat16)
    assert layer.q_proj.weight.dtype == torch.bfloat16
    assert layer.mixing.alpha_q.dtype == torch.float32 and layer.mixing.R.dtype == torch.float32
    assert torch.equal(layer.mixing.alpha_q, alpha) and torch.equal(layer.inv_freq, freqs)
    y, _ = layer(torch.randn(1, 5, 16, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    layer.double()  # upcasting is allowed (float64 tests and oracles)
    assert layer.mixing.alpha_q.dtype == torch.float64
