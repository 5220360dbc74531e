"""Every backend against the independent numpy oracle (`iha_test_oracle.iha_oracle`), random α.

Shapes span several Triton blocks (BLOCK_TOK = 16 tokens, BLOCK_K = 32 virtual keys, decode BLOCK_S =
16 tokens): N = 37 tokens with P = 2 is 74 virtual keys, odd sizes throughout.
"""

import math

import pytest
import torch
from iha_test_oracle import iha_oracle

from iha_attn import IHAConfig, InterleavedHeadAttention, collapse, iha_attention, mix_heads
from iha_attn.kernels import triton_iha
from iha_attn.rope import apply_rope, cos_sin, inv_freq, virtual_positions

needs_triton = pytest.mark.skipif(not triton_iha.available(), reason="needs CUDA or TRITON_INTERPRET=1")


def _rand(seed, B=1, H=2, Hkv=1, N=37, S=None, d=8, P=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    S = N if S is None else S
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    return dict(
        q=r(B, H, N, d), k=r(B, Hkv, S, d), v=r(B, Hkv, S, d),
        aq=r(H, H, P), ak=r(Hkv, Hkv, P), av=r(Hkv, Hkv, P), R=r(H, H * P), Rp=r(H, P),
    )  # fmt: skip


def _virtual_tables(n_q, n_kv, P, d, dtype=torch.float64):
    f = inv_freq(d, dtype=dtype)
    qpos = torch.arange(n_kv - n_q, n_kv)
    return (
        cos_sin(virtual_positions(qpos, P), f, dtype=dtype),
        cos_sin(virtual_positions(torch.arange(n_kv), P), f, dtype=dtype),
    )


def _run(t, backend, mask, window, collapse_mode="global", rope=False, P=2):
    rq = rk = None
    if rope:
        rq, rk = _virtual_tables(t["q"].shape[2], t["k"].shape[2], P, t["q"].shape[-1], t["q"].dtype)
    R = t["R"] if collapse_mode == "global" else t["Rp"]
    with torch.no_grad():
        return iha_attention(t["q"], t["k"], t["v"], t["aq"], t["ak"], t["av"], R, collapse_mode=collapse_mode,
                             mask_mode=mask, window=window, backend=backend, rope_q=rq, rope_k=rk)  # fmt: skip


def _oracle(t, mask, window, collapse_mode="global", rope="none"):
    R = t["R"] if collapse_mode == "global" else t["Rp"]
    return iha_oracle(t["q"], t["k"], t["v"], t["aq"], t["ak"], t["av"], R, collapse=collapse_mode, mask=mask,
                      window=window, rope=rope)  # fmt: skip


MASKS = [("flat_causal", None), ("token_causal", None), ("none", None), ("flat_causal", 5), ("token_causal", 3), ("none", 4)]  # fmt: skip


@pytest.mark.parametrize("mask,window", MASKS)
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_torch_backends_match_oracle(backend, mask, window):
    t = _rand(0, H=4, Hkv=2, N=13, P=3)
    torch.testing.assert_close(
        _run(t, backend, mask, window, P=3), _oracle(t, mask, window), atol=1e-10, rtol=1e-10
    )


@pytest.mark.parametrize("mask,window", [("flat_causal", None), ("token_causal", 3)])
def test_flex_matches_oracle(mask, window):
    t = _rand(1, H=2, Hkv=1, N=9, P=2, dtype=torch.float32)
    torch.testing.assert_close(
        _run(t, "flex", mask, window).double(), _oracle(t, mask, window), atol=2e-5, rtol=2e-5
    )


@pytest.mark.parametrize("collapse_mode", ["global", "per_head"])
def test_virtual_rope_matches_oracle(collapse_mode):
    t = _rand(2, H=2, Hkv=2, N=11, P=3)
    ref = _oracle(t, "flat_causal", None, collapse_mode, rope="virtual")
    torch.testing.assert_close(_run(t, "sdpa", "flat_causal", None, collapse_mode, rope=True, P=3), ref, atol=1e-10, rtol=1e-10)  # fmt: skip


@pytest.mark.parametrize("rope", ["virtual", "token"])
@pytest.mark.parametrize("mask,window", [("flat_causal", None), ("token_causal", 2), ("flat_causal", 3)])
def test_module_and_its_cached_decode_match_oracle(rope, mask, window):
    """The nn.Module (projections, RoPE at n·P+p or n, mixing, mask, collapse, W_O) in float64."""
    torch.manual_seed(0)
    cfg = IHAConfig(hidden_size=24, num_heads=4, num_kv_heads=2, head_dim=6, num_pseudo_heads=3,
                    rope_mode=rope, mask_mode=mask, window=window, init="normal")  # fmt: skip
    layer = InterleavedHeadAttention(cfg).double().eval()
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    q = layer.q_proj(x).view(2, 7, 4, 6).transpose(1, 2)
    k = layer.k_proj(x).view(2, 7, 2, 6).transpose(1, 2)
    v = layer.v_proj(x).view(2, 7, 2, 6).transpose(1, 2)
    mx = layer.mixing
    o = iha_oracle(q, k, v, mx.alpha_q, mx.alpha_k, mx.alpha_v, mx.R, mask=mask, window=window, rope=rope)
    ref = layer.o_proj(o.reshape(2, 7, 24))
    with torch.no_grad():
        full, _ = layer(x)
        y, cache = layer(x[:, :4], use_cache=True)
        steps = [y]
        for i in range(4, 7):
            y, cache = layer(x[:, i : i + 1], past_key_value=cache, use_cache=True)
            steps.append(y)
    torch.testing.assert_close(full, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(torch.cat(steps, 1), ref, atol=1e-10, rtol=1e-10)


TRITON_CASES = [  # (P, N, mask, window, collapse): the interpreter costs ~2 s per call, so a chosen set
    (2, 37, "flat_causal", None, "global"),
    (2, 37, "token_causal", None, "per_head"),
    (2, 37, "none", None, "global"),
    (2, 37, "flat_causal", 5, "per_head"),
    (2, 37, "token_causal", 3, "global"),
    (2, 37, "none", 4, "per_head"),
    (3, 23, "flat_causal", None, "per_head"),
    (3, 23, "token_causal", 2, "global"),
]


@needs_triton
@pytest.mark.parametrize("P,N,mask,window,collapse_mode", TRITON_CASES)
def test_triton_forward_multiblock_matches_oracle(P, N, mask, window, collapse_mode):
    t = _rand(3, H=2, Hkv=1, N=N, P=P, dtype=torch.float32)
    ref = _oracle(t, mask, window, collapse_mode)
    out = _run(t, "triton", mask, window, collapse_mode, P=P)  # per_head: the fused collapse epilogue
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=2e-5)


@needs_triton
def test_triton_forward_decode_offset_multiblock():
    """Queries are the last 5 of 37 tokens (q_offset > 0), with virtual RoPE."""
    t = _rand(4, H=2, Hkv=2, N=5, S=37, P=2, dtype=torch.float32)
    ref = _oracle(t, "flat_causal", None, rope="virtual")
    out = _run(t, "triton", "flat_causal", None, rope=True)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=2e-5)


@needs_triton
@pytest.mark.parametrize("mask,window,rope", [("flat_causal", None, True), ("token_causal", None, False), ("flat_causal", 6, True), ("token_causal", 5, False)])  # fmt: skip
def test_triton_decode_kernel_multiblock_matches_oracle(mask, window, rope):
    S, P, d = 37, 2, 8
    t = _rand(5, H=4, Hkv=2, N=1, S=S, P=P, d=d, dtype=torch.float32)
    qm = mix_heads(t["q"], t["aq"])
    rk = None
    if rope:
        rq, rk = _virtual_tables(1, S, P, d, torch.float32)
        qm = apply_rope(qm, *rq)
    o = triton_iha.iha_decode(qm, t["k"], t["v"], t["ak"], t["av"], mask_mode=mask, window=window,
                              scale=1 / math.sqrt(d), rope_k=rk)  # fmt: skip
    out = collapse(o[:, :, None], t["R"], "global")
    ref = _oracle(t, mask, window, rope="virtual" if rope else "none")
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=2e-5)


@needs_triton
def test_triton_gradients_match_oracle_gradients():
    """Gradients through the triton backend (q, α, R, values) equal autograd through the float64 oracle's
    torch twin below; compared against the oracle, not against the sdpa path the backward reuses."""
    t = _rand(6, H=2, Hkv=1, N=19, P=2, dtype=torch.float32)
    leaves = {n: t[n].clone().requires_grad_(True) for n in ("q", "v", "aq", "av", "R")}
    out = iha_attention(leaves["q"], t["k"], leaves["v"], leaves["aq"], t["ak"], leaves["av"], leaves["R"], backend="triton")  # fmt: skip
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out * w).sum().backward()
    eps = 1e-6
    for name in ("aq", "R"):  # central finite differences of the oracle, a few coordinates each
        base = t[name].double()
        for idx in [(0, 0, 0), (1, 0, 1)] if name == "aq" else [(0, 0), (1, 3)]:
            vals = []
            for sgn in (1, -1):
                pert = {n: t[n].double() for n in t}
                pert[name] = base.clone()
                pert[name][idx] += sgn * eps
                vals.append((_oracle(pert, "flat_causal", None) * w.double()).sum().item())
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert abs(leaves[name].grad[idx].item() - fd) < 1e-3 * max(1.0, abs(fd)), (name, idx)
    assert leaves["q"].grad.abs().sum() > 0 and leaves["v"].grad.abs().sum() > 0
