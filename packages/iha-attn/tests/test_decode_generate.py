"""Issue 21.4: decoding reads the ordinary-size cache (no P-fold pseudo-K/V), through the Triton decode
kernel when backend="triton" can run (CUDA, or TRITON_INTERPRET=1 here) and the torch decode path
otherwise; both equal the full forward, in the module and in transformers' generate()."""

import pytest
import torch

import iha_attn.functional as fn
from iha_attn import IHAConfig, InterleavedHeadAttention
from iha_attn.functional import iha_attention, iha_decode_attention
from iha_attn.kernels import triton_iha
from iha_attn.rope import cos_sin, inv_freq

needs_triton = pytest.mark.skipif(not triton_iha.available(), reason="triton cannot run here")


def _case(seed, H=4, Hkv=2, P=2, S=37, d=8, collapse="global", mix_v=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, H, 1, d, generator=g)
    k = torch.randn(2, Hkv, S, d, generator=g)
    v = torch.randn(2, Hkv, S, d, generator=g)
    aq = torch.randn(H, H, P, generator=g) * 0.5
    ak = torch.randn(Hkv, Hkv, P, generator=g) * 0.5
    av = torch.randn(Hkv, Hkv, P, generator=g) * 0.5 if mix_v else None
    R = torch.randn(H, H * P if collapse == "global" else P, generator=g) * 0.5
    return q, k, v, aq, ak, av, R


def _full_last_row(q, k, v, aq, ak, av, R, *, collapse, mask, window, freqs, tm=None):
    """The last query token of an ordinary (non-decode) forward with the same virtual positions n·P+p."""
    P, S = aq.shape[-1], k.shape[2]
    rq = rk = None
    if freqs is not None:
        kpos = torch.arange(S * P)[None]
        rq, rk = cos_sin(kpos[:, -P:], freqs), cos_sin(kpos, freqs)
    return iha_attention(q, k, v, aq, ak, av, R, collapse_mode=collapse, mask_mode=mask, window=window,
                         token_mask=tm, rope_q=rq, rope_k=rk, backend="eager")  # fmt: skip


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_triton)])
@pytest.mark.parametrize(
    "mask,window,rope,collapse,mix_v",
    [
        ("flat_causal", None, True, "global", True),
        ("token_causal", None, False, "per_head", True),
        ("flat_causal", 5, True, "per_head", False),
        ("token_causal", 3, True, "global", True),
    ],
)
def test_decode_paths_equal_full_forward(kernel, mask, window, rope, collapse, mix_v):
    """S = 37 tokens (74 virtual keys) spans several 16-key blocks of the kernel; GQA 4:2."""
    q, k, v, aq, ak, av, R = _case(0, collapse=collapse, mix_v=mix_v)
    P, S = aq.shape[-1], k.shape[2]
    freqs = inv_freq(8) if rope else None
    ref = _full_last_row(q, k, v, aq, ak, av, R, collapse=collapse, mask=mask, window=window, freqs=freqs)
    kb = (torch.arange(S) * P)[None] if rope else None
    qp = torch.tensor([[(S - 1) * P]]) if rope else None
    out = iha_decode_attention(q, k, v, aq, ak, av, R, collapse_mode=collapse, mask_mode=mask, window=window,
                               freqs=freqs, q_pos=qp, k_base=kb, use_kernel=kernel)  # fmt: skip
    assert out.shape == ref.shape == (2, 1, 4, 8)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_triton)])
def test_decode_with_padding_mask(kernel):
    q, k, v, aq, ak, av, R = _case(1, S=20)
    keep = torch.ones(2, 20, dtype=torch.bool)
    keep[1, :7] = False  # left padding of row 1
    tm = keep[:, None, None, :]
    ref = _full_last_row(q, k, v, aq, ak, av, R, collapse="global", mask="flat_causal", window=None, freqs=None, tm=tm)  # fmt: skip
    out = iha_decode_attention(q, k, v, aq, ak, av, R, token_mask=tm, use_kernel=kernel)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)
    # padding really matters: without the mask row 1 differs
    assert (iha_decode_attention(q, k, v, aq, ak, av, R, use_kernel=kernel)[1] - ref[1]).abs().max() > 1e-3


def _record_mix_heads(monkeypatch):
    seen = []
    real = fn.mix_heads

    def spy(x, alpha):
        seen.append(x.shape[2])
        return real(x, alpha)

    monkeypatch.setattr(fn, "mix_heads", spy)
    return seen


@pytest.mark.parametrize("backend", ["sdpa", pytest.param("triton", marks=needs_triton)])
def test_module_decode_mixes_only_the_new_token(backend, monkeypatch):
    torch.manual_seed(0)
    layer = InterleavedHeadAttention(IHAConfig(hidden_size=32, num_heads=4, num_kv_heads=2, num_pseudo_heads=2, backend=backend, init="normal")).eval()  # fmt: skip
    x = torch.randn(1, 8, 32)
    with torch.no_grad():
        full, _ = layer(x)
        _, cache = layer(x[:, :5], use_cache=True)
        seen = _record_mix_heads(monkeypatch)
        outs = []
        for t in range(5, 8):
            y, cache = layer(x[:, t : t + 1], cache=cache, use_cache=True)
            outs.append(y)
    assert seen == [1, 1, 1]  # only the query token is mixed; the cache is never turned into pseudo-K/V
    torch.testing.assert_close(torch.cat(outs, 1), full[:, 5:], atol=2e-5, rtol=2e-5)


def _count_calls(monkeypatch, name):
    calls = []
    real = getattr(triton_iha, name)

    def spy(*a, **kw):
        calls.append(a[0].shape)
        return real(*a, **kw)

    monkeypatch.setattr(triton_iha, name, spy)
    return calls


@needs_triton
def test_generate_uses_decode_kernel_and_equals_full_forward(monkeypatch):
    from iha_attn.hf import patch_model_with_iha
    from paperworks_shared.models import tiny_causal_lm

    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(2))
    model = tiny_causal_lm("llama-gqa", seed=3)
    torch.manual_seed(0)
    patch_model_with_iha(model, P=2, init="normal", rope_mode="virtual", backend="triton")
    n_layers = model.config.num_hidden_layers
    fwd, dec = _count_calls(monkeypatch, "iha_fwd"), _count_calls(monkeypatch, "iha_decode")
    seen = _record_mix_heads(monkeypatch)
    with torch.no_grad():
        g = model.generate(ids, max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True)  # fmt: skip
    assert len(fwd) == n_layers  # the prefill: one fused forward per layer
    assert len(dec) == 4 * n_layers  # 4 decode steps after the prefill's token, all through the kernel
    assert all(s[2] == 2 for s in dec)  # P pseudo-queries of one token per call
    n_decode_mixes = sum(1 for s in seen if s == 1)
    assert n_decode_mixes == 4 * n_layers and set(seen) <= {1, 6}  # q only; never the cache
    seq = g.sequences
    monkeypatch.undo()
    with torch.no_grad():
        full = model(seq).logits  # uncached full forward over the generated sequence (fused kernel)
    steps = torch.stack(g.logits, 1)
    torch.testing.assert_close(steps, full[:, 5:-1], atol=1e-4, rtol=1e-4)
