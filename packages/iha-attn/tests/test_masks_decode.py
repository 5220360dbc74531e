"""Virtual masks by hand, bottom-right alignment, and cached decoding == full forward (DESIGN.md §3.3 test 6)."""

import pytest
import torch
import torch.nn.functional as F

from iha_attn import IHAConfig, IHAKVCache, InterleavedHeadAttention
from iha_attn.masks import virtual_mask


def test_virtual_masks_by_hand():
    # N = 2 tokens, P = 2: virtual order (0,0),(0,1),(1,0),(1,1)
    flat = virtual_mask(2, 2, 2, "flat_causal")
    assert flat.int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    tok = virtual_mask(2, 2, 2, "token_causal")
    assert tok.int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    # window of 1 token: flat sees the last W·P = 2 virtual keys, token-causal only its own token
    assert virtual_mask(2, 2, 2, "flat_causal", window=1).int().tolist()[3] == [0, 0, 1, 1]
    assert virtual_mask(2, 2, 2, "token_causal", window=1).int().tolist()[2] == [0, 0, 1, 1]
    assert virtual_mask(2, 2, 2, "none") is None
    # decode: one new token (q_len = P) vs 3 cached tokens is bottom-right aligned
    dec = virtual_mask(1, 3, 2, "flat_causal")
    assert dec.int().tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]


def test_topleft_is_causal_is_wrong_for_decode():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 6, 4), torch.randn(1, 1, 6, 4)
    right = F.scaled_dot_product_attention(q, k, v, attn_mask=virtual_mask(1, 3, 2, "flat_causal"))
    topleft = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (right - topleft).abs().max() > 1e-3


def test_token_mask_expands_padding():
    pad = torch.tensor([[False, True, True]])[:, None, None, :].expand(1, 1, 3, 3)
    m = virtual_mask(3, 3, 2, "token_causal", token_mask=pad)
    assert m.shape == (1, 1, 6, 6)
    assert not m[..., :2].any()  # the padded token's 2 pseudo-keys are never visible


@pytest.mark.parametrize("kv", [4, 2])
@pytest.mark.parametrize("rope", ["virtual", "token", "none"])
@pytest.mark.parametrize(
    "mask,window", [("flat_causal", None), ("token_causal", None), ("flat_causal", 2), ("token_causal", 3)]
)
def test_cached_decode_equals_full_forward(mask, window, rope, kv):
    torch.manual_seed(0)
    cfg = IHAConfig(hidden_size=32, num_heads=4, num_kv_heads=kv, num_pseudo_heads=2, mask_mode=mask, rope_mode=rope, window=window, init="normal")  # fmt: skip
    layer = InterleavedHeadAttention(cfg).double().eval()
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    full, _ = layer(x)
    y, cache = layer(x[:, :3], use_cache=True)
    outs = [y]
    for t in range(3, 7):
        y, cache = layer(x[:, t : t + 1], past_key_value=cache, use_cache=True)
        outs.append(y)
        assert cache.get_seq_length() == t + 1  # real tokens, not (t+1)·P
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-6, rtol=1e-6)
    # the cache is MHA-sized: Hkv·d per token for K and for V, not P×
    assert cache.nbytes() == 2 * 2 * 7 * kv * 8 * 8


def test_padding_rows_are_zero_not_nan():
    cfg = IHAConfig(
        hidden_size=16, num_heads=2, num_pseudo_heads=2, mask_mode="token_causal", rope_mode="none"
    )
    layer = InterleavedHeadAttention(cfg)
    x = torch.randn(1, 4, 16)
    keep = torch.tensor([[0, 0, 1, 1]])
    key_pad = keep.bool()[:, None, None, :] & keep.bool()[:, None, :, None]  # padded queries see nothing
    for m in (keep, key_pad):
        y, _ = layer(x, attention_mask=m)
        assert torch.isfinite(y).all()
    # and left padding does not change the real tokens' outputs
    y_pad, _ = layer(x, attention_mask=keep)
    y_real, _ = layer(x[:, 2:])
    torch.testing.assert_close(y_pad[:, 2:], y_real, atol=1e-6, rtol=1e-6)


def test_cache_object():
    c = IHAKVCache()
    assert c.get_seq_length() == 0
    k = torch.zeros(1, 2, 3, 4)
    c.update(k, k, torch.arange(3)[None])
    assert c.get_seq_length() == 3


def test_module_accepts_cache_keyword():
    """`cache=` (the newer transformers spelling) is an alias of `past_key_value=`; both at once raise."""
    torch.manual_seed(0)
    layer = InterleavedHeadAttention(IHAConfig(hidden_size=16, num_heads=2, num_pseudo_heads=2)).double()
    x = torch.randn(1, 5, 16, dtype=torch.float64)
    full, _ = layer(x)
    _, c = layer(x[:, :3], use_cache=True)
    y4, c = layer(x[:, 3:4], cache=c, use_cache=True)
    y5, c = layer(x[:, 4:5], cache=c, use_cache=True)
    assert c.get_seq_length() == 5
    torch.testing.assert_close(torch.cat([y4, y5], 1), full[:, 3:], atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match="not both"):
        layer(x[:, 4:5], cache=c, past_key_value=IHAKVCache())


def test_bidirectional_window_and_3d_token_mask_by_hand():
    """mask_mode='none' with a window (|n_q - n_k| < W in tokens) and a 3-D token mask, written out by hand
    (mutation-pass survivors in masks.py: the 'none' branch and its window were not covered here)."""
    m = virtual_mask(3, 3, 2, "none", window=2)
    exp = torch.tensor(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
            [0, 0, 1, 1, 1, 1],
            [0, 0, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(m, exp)
    assert virtual_mask(3, 3, 2, "none") is None  # nothing masked
    with pytest.raises(ValueError, match="unknown mask_mode"):
        virtual_mask(2, 2, 2, "bogus")
    tm = torch.tensor([[[1, 0], [1, 1]]], dtype=torch.bool)  # [B, Nq, S]: query 0 may not see key 1
    got = virtual_mask(2, 2, 2, "none", token_mask=tm)
    assert got.shape == (1, 4, 4)
    assert torch.equal(got[0], tm[0].repeat_interleave(2, 0).repeat_interleave(2, 1))
