"""Exact parameter counts (DESIGN.md §1.4) and clear errors for bad input (issue deliverable 6)."""

import pytest
import torch

from iha_attn import IHAConfig, IHAMixing, InterleavedHeadAttention, iha_attention


@pytest.mark.parametrize("H,P", [(8, 8), (4, 2), (3, 5)])
def test_extra_params_global_is_4H2P(H, P):
    assert IHAMixing(H, H, P).extra_param_count() == 4 * H * H * P
    assert IHAMixing(H, H, P, collapse="per_head").extra_param_count() == 3 * H * H * P + H * P


def test_h8_p8_numbers_and_module_total():
    assert IHAMixing(8, 8, 8).extra_param_count() == 2048
    assert IHAMixing(8, 8, 8, collapse="per_head").extra_param_count() == 1600
    cfg = IHAConfig(hidden_size=64, num_heads=8, num_pseudo_heads=8)
    layer = InterleavedHeadAttention(cfg)
    mha = 4 * 64 * 64  # W_Q, W_K, W_V, W_O without bias
    assert sum(p.numel() for p in layer.parameters()) == mha + 2048 == mha + cfg.extra_param_count()
    # GQA: α^K, α^V mix within the KV heads
    assert IHAMixing(4, 2, 2).extra_param_count() == 16 * 2 + 2 * 4 * 2 + 4 * 8


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(num_pseudo_heads=0), "num_pseudo_heads"),
        (dict(num_heads=4, num_kv_heads=3), "not divisible by num_kv_heads"),
        (dict(mask_mode="causal"), "mask_mode"),
        (dict(backend="fa"), "backend"),
        (dict(init="mha_exact", rope_mode="virtual"), "mha_exact"),
        (dict(softmax="linear", backend="sdpa"), "linear"),
        (dict(window=0), "window"),
        (dict(collapse="mean"), "collapse"),
    ],
)
def test_config_errors(kw, msg):
    base = dict(hidden_size=32, num_heads=4)
    base.update(kw)
    with pytest.raises(ValueError, match=msg):
        IHAConfig(**base)


def test_mixing_errors():
    with pytest.raises(ValueError, match="P"):
        IHAMixing(4, 4, 0)
    with pytest.raises(ValueError, match="divisible"):
        IHAMixing(4, 3, 2)


def test_backend_cannot_express_combination():
    q = torch.randn(1, 2, 4, 8)
    a = torch.randn(2, 2, 2)
    R = torch.randn(2, 4)
    tm = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="triton"):
        iha_attention(q, q, q, a, a, a, R, backend="triton", token_mask=tm)
    with pytest.raises(ValueError, match="linear"):
        iha_attention(q, q, q, a, a, a, R, backend="sdpa", softmax="linear")
    qg = q.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="CPU"):
        iha_attention(qg, q, q, a, a, a, R, backend="flex")
    with pytest.raises(ValueError, match="alpha"):
        iha_attention(q, q, q, torch.randn(3, 3, 2), a, a, R)


def test_module_input_errors():
    layer = InterleavedHeadAttention(IHAConfig(hidden_size=16, num_heads=2))
    with pytest.raises(ValueError, match="expected x"):
        layer(torch.randn(2, 3, 8))
    with pytest.raises(TypeError, match="bool"):
        layer(torch.randn(1, 3, 16), attention_mask=torch.zeros(1, 1, 3, 3))
