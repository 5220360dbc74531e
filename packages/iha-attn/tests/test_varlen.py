"""Issue 21.6: packed varlen input (cu_seqlens) equals running the sequences one by one (outputs and
gradients), for every mask mode, windows, RoPE modes, GQA and the torch backends."""

import pytest
import torch

from iha_attn import IHAConfig, InterleavedHeadAttention

LENS = [5, 1, 9, 3]


@pytest.mark.parametrize(
    "mask,window,rope,backend",
    [
        ("flat_causal", None, "virtual", "sdpa"),
        ("token_causal", 2, "virtual", "sdpa"),
        ("flat_causal", 3, "token", "eager"),
        ("none", None, "virtual", "sdpa"),
        ("token_causal", None, "none", "flex"),
    ],
)
def test_packed_equals_one_by_one(mask, window, rope, backend):
    torch.manual_seed(0)
    cfg = IHAConfig(hidden_size=32, num_heads=4, num_kv_heads=2, num_pseudo_heads=2, mask_mode=mask,
                    window=window, rope_mode=rope, backend=backend, init="normal")  # fmt: skip
    layer = InterleavedHeadAttention(cfg).double()
    docs = [torch.randn(1, n, 32, dtype=torch.float64) for n in LENS]
    cu = torch.tensor([0, *torch.cumsum(torch.tensor(LENS), 0).tolist()])
    train = backend != "flex"  # FlexAttention has no CPU backward
    packed_x = torch.cat(docs, 1).requires_grad_(train)
    with torch.set_grad_enabled(train):
        packed, _ = layer(packed_x, cu_seqlens=cu)
        ref = torch.cat([layer(d)[0] for d in docs], 1)
    torch.testing.assert_close(packed, ref, atol=1e-10, rtol=1e-10)
    if train:  # gradients of the shared weights agree too (training on packed batches)
        w = torch.randn_like(ref)
        g1 = torch.autograd.grad((packed * w).sum(), [layer.mixing.alpha_q, layer.q_proj.weight])
        g2 = torch.autograd.grad((ref * w).sum(), [layer.mixing.alpha_q, layer.q_proj.weight])
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
    # the documents really are isolated: packing without cu_seqlens gives something else
    with torch.no_grad():
        assert (layer(packed_x.detach())[0] - ref).abs().max() > 1e-3


def test_cu_seqlens_errors():
    layer = InterleavedHeadAttention(IHAConfig(hidden_size=16, num_heads=2))
    x = torch.randn(1, 6, 16)
    for bad, words in (
        (torch.tensor([0, 4]), "rise strictly from 0 to the 6"),
        (torch.tensor([1, 6]), "rise strictly"),
        (torch.tensor([0, 3, 3, 6]), "rise strictly"),
        (torch.tensor([0.0, 6.0]), "integer"),
    ):
        with pytest.raises(ValueError, match=words):
            layer(x, cu_seqlens=bad)
    with pytest.raises(ValueError, match="one row"):
        layer(torch.randn(2, 6, 16), cu_seqlens=torch.tensor([0, 6]))
    with pytest.raises(ValueError, match="KV cache"):
        layer(x, cu_seqlens=torch.tensor([0, 6]), use_cache=True)
    with pytest.raises(ValueError, match="attention_mask"):
        layer(x, cu_seqlens=torch.tensor([0, 6]), attention_mask=torch.ones(1, 6))
    tri = InterleavedHeadAttention(IHAConfig(hidden_size=16, num_heads=2, backend="triton"))
    with pytest.raises((ValueError, RuntimeError), match="triton|Triton"):
        tri(x, cu_seqlens=torch.tensor([0, 2, 6]))
