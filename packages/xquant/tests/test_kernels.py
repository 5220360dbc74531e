"""Triton kernels vs the torch references under TRITON_INTERPRET=1 (fp32/fp16 only; DESIGN.md pitfall 11)."""

import os

import pytest
import torch

pytest.importorskip("triton")
if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no CUDA and TRITON_INTERPRET is not set", allow_module_level=True)

from xquant.kernels.reference import dequant_matmul_ref, quantize_pack_ref  # noqa: E402
from xquant.kernels.triton_dequant_matmul import dequant_matmul  # noqa: E402
from xquant.kernels.triton_pack import quantize_pack  # noqa: E402
from xquant.quant import quantize  # noqa: E402


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("g", [16, 64])
def test_quantize_pack_matches_reference_bitwise(bits, g):
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(bits)) * 2
    ref = quantize_pack_ref(x, bits, g)
    tri = quantize_pack(x, bits, g)
    assert torch.equal(tri.codes, ref.codes)
    assert torch.equal(tri.scale, ref.scale) and torch.equal(tri.zero, ref.zero)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_dequant_matmul_matches_reference(bits, dtype):
    g = torch.Generator().manual_seed(10 + bits)
    x = torch.randn(2, 40, 64, generator=g)
    w = (torch.randn(64, 96, generator=g) / 8).to(dtype)
    bias = (torch.randn(96, generator=g) / 4).to(dtype)
    q = quantize(x, bits, 32, "token")
    ref = dequant_matmul_ref(q, w, bias)
    out = dequant_matmul(q, w, bias)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)


def test_dequant_matmul_per_channel_codes():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 64, 32, generator=g)
    w = torch.randn(32, 48, generator=g) / 6
    q = quantize(x, 4, 16, "channel")
    torch.testing.assert_close(dequant_matmul(q, w), dequant_matmul_ref(q, w), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_rope_epilogue_matches_reference(dtype):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 24, 64, generator=g)
    w = (torch.randn(64, 64, generator=g) / 8).to(dtype)
    bias = (torch.randn(64, generator=g) / 4).to(dtype)
    ang = torch.rand(2, 24, 16, generator=g) * 6
    cos = torch.cat([ang.cos(), ang.cos()], -1)
    sin = torch.cat([ang.sin(), ang.sin()], -1)
    q = quantize(x, 3, 32, "token")
    ref = dequant_matmul_ref(q, w, bias, rope=(cos, sin), head_dim=32)
    out = dequant_matmul(q, w, bias, rope=(cos, sin), head_dim=32)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)


def test_triton_backend_cache_matches_torch_backend(tiny):
    from xquant import XQuantCache, XQuantConfig

    model = tiny("qwen2")  # k/v bias goes through the fused GEMM
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(5))
    outs = {}
    for backend in ("torch", "triton"):
        cfg = XQuantConfig(bits=4, group_size=32, residual_length=2, backend=backend)
        with XQuantCache.from_model(model, cfg) as cache:
            with torch.no_grad():
                model(input_ids=ids, past_key_values=cache, use_cache=True)
                outs[backend] = model(input_ids=ids[:, :1], past_key_values=cache, use_cache=True).logits
            assert cache.layers[0].backend.name == backend
    torch.testing.assert_close(outs["triton"], outs["torch"], atol=1e-4, rtol=1e-4)


def test_kv_weight_concatenated_once_and_refreshed_on_change(tiny, monkeypatch):
    """Issue 22.4: no [W_k | W_v] concatenation per decode step; a changed weight is picked up."""
    from xquant import XQuantCache, XQuantConfig

    model = tiny("qwen2", num_hidden_layers=1)
    cfg = XQuantConfig(bits=4, group_size=32, residual_length=0, backend="triton")
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad(), XQuantCache.from_model(model, cfg) as cache:
        model(input_ids=ids, past_key_values=cache, use_cache=True)
        spec = cache.layers[0].spec
        w0, b0 = spec.kv_weight()
        weight_cats = []
        real_cat = torch.cat
        kw_ = spec.k_proj.weight

        def spy(ts, *a, **k):
            weight_cats.extend(1 for t in ts if t is kw_)
            return real_cat(ts, *a, **k)

        monkeypatch.setattr(torch, "cat", spy)
        for t in range(2):
            model(input_ids=ids[:, t : t + 1], past_key_values=cache, use_cache=True)
        monkeypatch.undo()
        assert weight_cats == []  # decode steps never concatenate the weights
        assert spec.kv_weight()[0] is w0
        assert torch.equal(w0, real_cat([spec.k_proj.weight, spec.v_proj.weight], 0).T)
        assert torch.equal(b0, real_cat([spec.k_proj.bias, spec.v_proj.bias]))
        model.model.layers[0].self_attn.v_proj.weight.mul_(2.0)
        w1, _ = spec.kv_weight()
        assert w1 is not w0 and torch.equal(w1[:, spec.kv_dim :], spec.v_proj.weight.T)


# -- issue 22.4: the fused kernels on every rematerialization path -------------------------------
from xquant.kernels.triton_dequant_matmul import dequantize_fused  # noqa: E402
from xquant.quant import dequantize  # noqa: E402


@pytest.mark.parametrize("axis", ["token", "channel"])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_dequantize_fused_matches_reference_with_and_without_add(axis, bits):
    """Several blocks in both directions (2 x 64 token rows x 96 channels, blocks of 32)."""
    g = torch.Generator().manual_seed(20 + bits)
    x = torch.randn(2, 64, 96, generator=g)
    q = quantize(x, bits, 32 if axis == "token" else 16, axis)
    torch.testing.assert_close(dequantize_fused(q), dequantize(q), atol=1e-6, rtol=0)
    acc = torch.randn(2, 64, 96, generator=g)
    torch.testing.assert_close(dequantize_fused(q, add=acc), acc + dequantize(q), atol=1e-5, rtol=0)


@pytest.mark.parametrize("axis", ["token", "channel"])
def test_dequant_matmul_accumulator_epilogue(axis):
    """GQA-CL read: acc + deq(Δ)·U_kvᵀ in one kernel (accumulator added in the epilogue)."""
    g = torch.Generator().manual_seed(30)
    d = torch.randn(1, 80, 32, generator=g)
    u = torch.linalg.qr(torch.randn(96, 32, generator=g))[0]
    acc = torch.randn(1, 80, 96, generator=g)
    q = quantize(d, 3, 16, axis)
    ref = acc + dequant_matmul_ref(q, u.T)
    torch.testing.assert_close(dequant_matmul(q, u.T, add=acc), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="add has shape"):
        dequant_matmul(q, u.T, add=acc[:, :10])


def _paths():
    from xquant import KIVIConfig, XQuantConfig

    return {
        "mha-x": ("llama", XQuantConfig(bits=3, group_size=32, residual_length=5, keep_first_n=2)),
        "gqa-latent": ("llama-gqa", XQuantConfig(bits=4, group_size=16, residual_length=16, keep_first_n=1)),
        "mha-cl": ("llama", XQuantConfig(bits=2, group_size=32, residual_length=3, cross_layer=True, base_layer=1)),
        "gqa-cl": ("llama-gqa", XQuantConfig(bits=3, group_size=16, residual_length=3, cross_layer=True, base_layer=0)),
        "kivi*": ("llama-gqa", KIVIConfig(bits=2, group_size=16, residual_length=16, backend="triton")),
    }  # fmt: skip


@pytest.mark.slow  # the interpreter runs every program in Python: ~1 min per path on 2 cores
@pytest.mark.parametrize("path", ["mha-x", "gqa-latent", "mha-cl", "gqa-cl", "kivi*"])
def test_every_path_on_triton_matches_torch_and_uses_the_kernels(tiny, path, monkeypatch):
    """Prefill 2 x 40 tokens (80 rows: 3 blocks of 32) + 2 decode steps: Triton backend = torch backend, and the
    fused kernels really ran (counted)."""
    import dataclasses

    import xquant.kernels.triton_dequant_matmul as tdm
    from xquant import KIVICache, KIVIConfig, XQuantCache

    arch, cfg = _paths()[path]
    model = tiny(arch, num_hidden_layers=3) if path == "gqa-cl" else tiny(arch)
    calls = {"dequant_matmul": 0, "dequantize_fused": 0}
    for name in calls:
        real = getattr(tdm, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(tdm, name, counted)
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(6))
    logits = {}
    for backend in ("torch", "triton"):
        c = dataclasses.replace(cfg, backend=backend)
        cache = (
            KIVICache.from_model(model, c) if isinstance(c, KIVIConfig) else XQuantCache.from_model(model, c)
        )
        assert cache.layers[-1].backend.name == backend
        with torch.no_grad():
            out = [model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]]
            for t in range(2):
                out.append(
                    model(input_ids=ids[:, t : t + 1], past_key_values=cache, use_cache=True).logits[:, -1]
                )
        cache.detach()
        logits[backend] = torch.stack(out)
    torch.testing.assert_close(logits["triton"], logits["torch"], atol=2e-4, rtol=2e-4)
    expect = {"mha-x": "dequant_matmul", "gqa-latent": "dequant_matmul", "gqa-cl": "dequant_matmul",
              "mha-cl": "dequantize_fused", "kivi*": "dequantize_fused"}[path]  # fmt: skip
    assert calls[expect] >= 2, calls
