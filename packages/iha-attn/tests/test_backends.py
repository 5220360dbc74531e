"""All backends agree (DESIGN.md §3.3 test 10); the Triton kernels run under TRITON_INTERPRET=1 on CPU."""

import math

import pytest
import torch

from iha_attn import IHAConfig, InterleavedHeadAttention, collapse, iha_attention, mix_heads
from iha_attn.kernels import triton_iha
from iha_attn.rope import cos_sin, inv_freq, virtual_positions

CASES = [
    ("flat_causal", None),
    ("token_causal", None),
    ("none", None),
    ("flat_causal", 2),
    ("token_causal", 2),
]


def _inputs(seed=0, B=1, H=2, Hkv=2, N=5, d=8, P=2, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return (
        r(B, H, N, d),
        r(B, Hkv, N, d),
        r(B, Hkv, N, d),
        r(H, H, P),
        r(Hkv, Hkv, P),
        r(Hkv, Hkv, P),
        r(H, H * P),
        r(H, P),
    )


@pytest.mark.parametrize("mask,window", CASES)
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_torch_backends_agree_with_eager(mask, window, backend):
    q, k, v, aq, ak, av, R, _ = _inputs(Hkv=1, H=2)
    ref = iha_attention(q, k, v, aq, ak, av, R, mask_mode=mask, window=window, backend="eager")
    with torch.no_grad():
        out = iha_attention(q, k, v, aq, ak, av, R, mask_mode=mask, window=window, backend=backend)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


needs_triton = pytest.mark.skipif(not triton_iha.available(), reason="needs CUDA or TRITON_INTERPRET=1")


@needs_triton
def test_triton_fp16():  # gradients: test_oracle.test_triton_gradients_match_oracle_gradients
    q, k, v, aq, ak, av, R, Rp = _inputs(seed=2, dtype=torch.float16, N=4)
    ref = iha_attention(q.float(), k.float(), v.float(), aq.float(), ak.float(), av.float(), Rp.float(), collapse_mode="per_head")  # fmt: skip
    out = iha_attention(q, k, v, aq, ak, av, Rp, collapse_mode="per_head", backend="triton")
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


@needs_triton
@pytest.mark.parametrize(
    "mask,window,rope",
    [("flat_causal", None, True), ("token_causal", None, False), ("flat_causal", 2, False)],
)
def test_triton_decode_from_mha_sized_cache(mask, window, rope):
    B, H, Hkv, S, d, P = 1, 2, 1, 6, 8, 2
    g = torch.Generator().manual_seed(4)
    q_new = torch.randn(B, H, 1, d, generator=g)
    k, v = torch.randn(B, Hkv, S, d, generator=g), torch.randn(B, Hkv, S, d, generator=g)
    aq, ak, av = (
        torch.randn(H, H, P, generator=g),
        torch.randn(Hkv, Hkv, P, generator=g),
        torch.randn(Hkv, Hkv, P, generator=g),
    )
    R = torch.randn(H, H * P, generator=g)
    rq = rk = None
    if rope:
        f = inv_freq(d)
        rq = cos_sin(virtual_positions(torch.tensor([[S - 1]]), P), f)
        rk = cos_sin(virtual_positions(torch.arange(S)[None], P), f)
    ref = iha_attention(
        q_new, k, v, aq, ak, av, R, mask_mode=mask, window=window, backend="eager", rope_q=rq, rope_k=rk
    )
    qm = mix_heads(q_new, aq)
    if rope:
        from iha_attn.rope import apply_rope

        qm = apply_rope(qm, *rq)
    o = triton_iha.iha_decode(
        qm, k, v, ak, av, mask_mode=mask, window=window, scale=1 / math.sqrt(d), rope_k=rk
    )
    out = collapse(o[:, :, None], R, "global")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@needs_triton
def test_module_triton_backend_decodes_like_sdpa():
    torch.manual_seed(0)
    cfg = dict(hidden_size=16, num_heads=2, num_pseudo_heads=2, init="normal")
    a = InterleavedHeadAttention(IHAConfig(**cfg, backend="sdpa")).eval()
    b = InterleavedHeadAttention(IHAConfig(**cfg, backend="triton")).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 4, 16)
    with torch.no_grad():
        full, _ = a(x)
        y, cache = b(x[:, :3], use_cache=True)
        y2, _ = b(x[:, 3:], past_key_value=cache, use_cache=True)  # the decode kernel path
    torch.testing.assert_close(torch.cat([y, y2], 1), full, atol=1e-5, rtol=1e-5)


def test_per_head_token_mask_agrees_across_backends():
    """A token mask that differs per head reaches every backend (a surviving mutant: Flex used head 0's mask)."""
    q, k, v, aq, ak, av, R, _ = _inputs(seed=3, Hkv=2, H=2, N=6)
    g = torch.Generator().manual_seed(7)
    tm = torch.rand(1, 2, 6, 6, generator=g) > 0.4
    tm |= torch.eye(6, dtype=torch.bool)  # every query keeps itself
    assert not torch.equal(tm[0, 0], tm[0, 1])
    ref = iha_attention(q, k, v, aq, ak, av, R, mask_mode="none", token_mask=tm, backend="eager")
    head0 = iha_attention(q, k, v, aq, ak, av, R, mask_mode="none", token_mask=tm[:, :1], backend="eager")
    assert not torch.allclose(ref, head0, atol=1e-4)  # the per-head mask matters for this input
    with torch.no_grad():
        for backend in ("sdpa", "flex"):
            out = iha_attention(q, k, v, aq, ak, av, R, mask_mode="none", token_mask=tm, backend=backend)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5, msg=backend)


def test_default_dropout_is_off_in_training_mode():
    q, k, v, aq, ak, av, R, _ = _inputs(seed=4)
    torch.manual_seed(0)
    train = iha_attention(q, k, v, aq, ak, av, R, backend="sdpa", training=True)
    ref = iha_attention(q, k, v, aq, ak, av, R, backend="sdpa")
    torch.testing.assert_close(train, ref, atol=0, rtol=0)
