"""Issue 21.5: the Triton backward (flash-style recomputation in virtual units, same masks and windows)
against the eager reference at shapes spanning several 16-row/16-key blocks, without the SDPA path."""

import pytest
import torch

import iha_attn.functional as fn
from iha_attn.functional import iha_attention
from iha_attn.kernels import triton_iha

pytestmark = pytest.mark.skipif(not triton_iha.available(), reason="needs CUDA or TRITON_INTERPRET=1")


def _inputs(N, nq, H=4, Hkv=2, P=2, d=8, collapse="global"):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, H, nq, d, generator=g)
    k, v = torch.randn(2, Hkv, N, d, generator=g), torch.randn(2, Hkv, N, d, generator=g)
    aq = torch.randn(H, H, P, generator=g) * 0.5
    ak, av = torch.randn(Hkv, Hkv, P, generator=g) * 0.5, torch.randn(Hkv, Hkv, P, generator=g) * 0.5
    R = torch.randn(H, H * P if collapse == "global" else P, generator=g) * 0.5
    return [q, k, v, aq, ak, av, R]


@pytest.mark.parametrize(
    "mask,window,collapse,N,nq",
    [
        pytest.param("flat_causal", None, "per_head", 37, 37, marks=pytest.mark.slow),  # 74 virtual: 5 blocks
        ("token_causal", 3, "global", 37, 37),  # 74 virtual rows/keys: several 16-blocks, windowed
        ("none", 4, "per_head", 20, 7),  # fewer queries than keys (bottom-right), bidirectional window
    ],
)
def test_triton_backward_matches_eager(mask, window, collapse, N, nq, monkeypatch):
    ins = _inputs(N, nq, collapse=collapse)
    grads, outs = {}, {}
    w = None
    for be in ("eager", "triton"):
        xs = [t.detach().clone().requires_grad_(True) for t in ins]
        if be == "triton":  # the backward must not fall back to recomputing through SDPA
            monkeypatch.setattr(
                fn, "attend_sdpa", lambda *a, **k: pytest.fail("SDPA used in triton backward")
            )
            monkeypatch.setattr(triton_iha, "_reference", lambda *a, **k: pytest.fail("torch reference used"))
        o = iha_attention(*xs, collapse_mode=collapse, mask_mode=mask, window=window, backend=be)
        w = torch.randn(o.shape, generator=torch.Generator().manual_seed(3)) if w is None else w
        (o * w).sum().backward()
        outs[be], grads[be] = o.detach(), [x.grad for x in xs]
    torch.testing.assert_close(outs["triton"], outs["eager"], atol=1e-5, rtol=1e-5)
    for name, a, b in zip(("q", "k", "v", "aq", "ak", "av", "R"), grads["triton"], grads["eager"]):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=5e-5, msg=name)


def test_inference_keeps_fused_epilogue_and_writes_no_lse(monkeypatch):
    calls = []
    real = triton_iha._fwd_launch
    monkeypatch.setattr(triton_iha, "_fwd_launch", lambda *a, **k: calls.append((a[3] is not None, k)) or real(*a, **k))  # fmt: skip
    q, k, v, aq, ak, av, R = _inputs(20, 20, collapse="per_head")
    with torch.no_grad():
        iha_attention(q, k, v, aq, ak, av, R, collapse_mode="per_head", backend="triton")
    assert calls == [(True, {})]  # fused R, no lse
    iha_attention(q, k, v, aq.requires_grad_(True), ak, av, R, collapse_mode="per_head", backend="triton")
    assert calls[1] == (False, {"want_lse": True})  # training: uncollapsed output + lse for the backward
