"""Issue 18 regressions: every one of these failed on the code before the fix (checked by reverting).

RoPE types exact or refused, atomic crop, simulate caches refuse extension, no stale captured X,
Triton group sizes checked at construction, nbytes() = storage really held, bounded dequantize peak.
"""

import gc
import os
import subprocess
import sys
import textwrap
import types
import weakref

import pytest
import torch
from torch import nn
from transformers import DynamicCache
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from xquant import KIVICache, KIVIConfig, XQuantCache, XQuantConfig
from xquant.accounting import expected_xquant_nbytes
from xquant.hooks import STATIC_ROPE_TYPES, resolve_rope_store
from xquant.svd import Latent

MAXP = 16  # max_position_embeddings of the RoPE models: generation runs well past it


def _rope_params(t):
    p = {"rope_type": t, "rope_theta": 10000.0}
    if t in ("linear", "dynamic"):
        p["factor"] = 4.0
    elif t == "yarn":
        p.update(factor=4.0, original_max_position_embeddings=MAXP)
    elif t == "llama3":
        p.update(factor=4.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=MAXP)
    elif t == "longrope":
        p.update(short_factor=[1.0] * 8, long_factor=[1.0 + i for i in range(8)],
                 original_max_position_embeddings=MAXP)  # fmt: skip
    elif t == "proportional":
        p.update(partial_rotary_factor=0.5)
    elif t != "default":
        return None
    return p


def _rope_model(rope_type, layers=2):
    from paperworks_shared.models import tiny_causal_lm

    return tiny_causal_lm("llama", seed=0, num_hidden_layers=layers, max_position_embeddings=MAXP,
                          rope_parameters=_rope_params(rope_type))  # fmt: skip


@pytest.mark.parametrize("rope_type", ["default", *ROPE_INIT_FUNCTIONS])
def test_every_rope_type_exact_under_default_rope_store(tiny, rope_type):
    """Default config, bits=16: generation past max_position_embeddings equals DynamicCache."""
    params = _rope_params(rope_type)
    if params is None:  # a type this test cannot configure: the default must at least not trust positions
        fake = types.SimpleNamespace(rope_type=rope_type)
        assert resolve_rope_store("auto", fake) == "cos_sin"
        return
    model = _rope_model(rope_type)
    ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(0))
    kw = dict(max_new_tokens=30, do_sample=False, output_logits=True, return_dict_in_generate=True)
    ref = model.generate(ids, past_key_values=DynamicCache(config=model.config), **kw)
    with XQuantCache.from_model(model, XQuantConfig(bits=16)) as cache:
        out = model.generate(ids, past_key_values=cache, **kw)
    assert torch.equal(out.sequences, ref.sequences)
    torch.testing.assert_close(torch.stack(out.logits), torch.stack(ref.logits), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rope_type", ["dynamic", "longrope"])
def test_positions_store_refused_for_length_dependent_rope(tiny, rope_type):
    model = _rope_model(rope_type, 1)
    with pytest.raises(ValueError, match=f"cannot reproduce RoPE type '{rope_type}'"):
        XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=32, rope_store="positions"))
    with pytest.raises(ValueError, match="rope_store='positions'"):
        KIVICache.from_model(model, KIVIConfig(bits=2, group_size=32, rope_store="positions"))


@pytest.mark.parametrize("rope_type", STATIC_ROPE_TYPES)
def test_static_rope_types_depend_on_position_only(tiny, rope_type):
    """What makes rope_store='positions' exact: cos/sin of a position do not depend on the call."""
    model = _rope_model(rope_type, 1)
    rot = model.model.rotary_emb
    x = torch.zeros(1)
    full = rot(x, torch.arange(80)[None])
    part = rot(x, torch.arange(3, 9)[None])  # after a long call, a short one
    for a, b in zip(full, part):
        assert torch.equal(a[:, 3:9], b)


def _latent_cache(model, r=4):
    return XQuantCache.from_model(model, XQuantConfig(bits=2, group_size=8, residual_length=r))


def _snapshot(cache):
    return [
        (layer.n_tokens, *[(s.n_quantized, s.n_window) for s in layer.stores()]) for layer in cache.layers
    ] + [len(cache.state.rope), cache.nbytes()]


def test_crop_is_atomic_on_gqa_latent_cache(tiny):
    model = tiny("llama-gqa")
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), _latent_cache(model) as a, _latent_cache(model) as b:
        model(input_ids=ids, past_key_values=a, use_cache=True)
        model(input_ids=ids, past_key_values=b, use_cache=True)
        assert (a.layers[0].ks.n_quantized, a.layers[0].ks.n_window) == (16, 4)
        before = _snapshot(a)
        with pytest.raises(NotImplementedError, match="per-channel quantized groups"):
            a.crop(-6)  # 2 of the 6 tokens sit in a quantized per-channel group
        assert _snapshot(a) == before  # nothing was cropped anywhere
        with pytest.raises(ValueError, match="cannot remove 25 tokens"):
            a.crop(-25)
        assert _snapshot(a) == before
        nxt = torch.tensor([[5]])
        la = model(input_ids=nxt, past_key_values=a, use_cache=True).logits
        lb = model(input_ids=nxt, past_key_values=b, use_cache=True).logits
        torch.testing.assert_close(la, lb, atol=0, rtol=0)
        a.crop(-3)  # inside the window: allowed, on every layer and on the RoPE store
        assert all(layer.n_tokens == 18 for layer in a.layers) and len(a.state.rope) == 18


@pytest.mark.parametrize("kind", ["xquant", "xquant-cl", "kivi"])
def test_simulated_cache_cannot_be_extended(tiny, kind):
    model = tiny("llama")
    cfg = {
        "xquant": XQuantConfig(bits=4, group_size=32),
        "xquant-cl": XQuantConfig(bits=4, group_size=32, cross_layer=True, base_layer=0),
        "kivi": KIVIConfig(bits=4, group_size=32),
    }[kind]
    cls = KIVICache if kind == "kivi" else XQuantCache
    with torch.no_grad(), cls.from_model(model, cfg, simulate=True) as cache:
        assert not cache.state.simulated
        model(input_ids=torch.randint(0, 256, (1, 5)), past_key_values=cache, use_cache=True)
        assert cache.state.simulated  # set by the pass itself, nobody else
        with pytest.raises(RuntimeError, match="simulation"):
            model(input_ids=torch.randint(0, 256, (1, 1)), past_key_values=cache, use_cache=True)
        assert cache.get_seq_length() == 5 and not cache.state.hooks.slots
        cache.reset()
        model(input_ids=torch.randint(0, 256, (1, 3)), past_key_values=cache, use_cache=True)
        assert cache.get_seq_length() == 3


def test_forward_without_this_cache_leaves_no_captured_x(tiny):
    model = tiny("llama")
    ids = torch.randint(0, 256, (1, 6))
    with torch.no_grad(), XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=32)) as cache:
        model(input_ids=ids, use_cache=False)
        assert cache.state.hooks.slots == {}
        model(input_ids=ids, past_key_values=DynamicCache(config=model.config), use_cache=True)
        assert cache.state.hooks.slots == {}
        model(input_ids=ids, past_key_values=cache, use_cache=True)  # the cache itself still works
        assert cache.get_seq_length() == 6 and cache.state.hooks.slots == {}


def test_triton_group_sizes_checked_at_construction(tiny):
    pytest.importorskip("triton")
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton backend unavailable")
    model = tiny("llama", hidden_size=96, num_attention_heads=4)  # d = 96: G = 48, 24, 8 all divide it
    for g, msg in ((48, "power of two"), (24, "power of two"), (8, "multiple of 16")):
        with pytest.raises(ValueError, match=f"group_size={g} .*{msg}"):
            XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=g, backend="triton"))
        XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=g, backend="torch")).detach()
    XQuantCache.from_model(model, XQuantConfig(bits=16, group_size=48, backend="triton")).detach()
    gqa = tiny("llama-gqa")
    with pytest.raises(ValueError, match="power of two"):  # latent per-token V store uses the pack kernel
        XQuantCache.from_model(gqa, XQuantConfig(bits=4, group_size=4, backend="triton"))


# -- memory actually held ------------------------------------------------------------------------
def held_storage_bytes(root) -> int:
    """Independent measurement: walk every object reachable from `root` (skipping the model's modules,
    the SVD factors, classes, functions and weak references) and sum the distinct tensor storages."""
    skip = (nn.Module, Latent, type, types.ModuleType, types.FunctionType, types.MethodType, weakref.ref)
    seen, storages, stack = set(), {}, [root]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            storages[st.data_ptr()] = st.nbytes()
            continue
        if isinstance(o, skip) or o is root.model_config:
            continue
        stack.extend(gc.get_referents(o))
    return sum(storages.values())


CASES = {
    "mha-window": (
        "llama",
        lambda m: XQuantCache.from_model(m, XQuantConfig(bits=4, group_size=32, residual_length=8)),
    ),
    "gqa-latent": (
        "llama-gqa",
        lambda m: XQuantCache.from_model(m, XQuantConfig(bits=2, group_size=8, residual_length=12)),
    ),
    "cl": (
        "llama",
        lambda m: XQuantCache.from_model(
            m, XQuantConfig(bits=3, group_size=32, residual_length=4, cross_layer=True, base_layer=0)
        ),
    ),
    "bits16": ("qwen3", lambda m: XQuantCache.from_model(m, XQuantConfig(bits=16, residual_length=8))),
    "cos-sin": (
        "llama",
        lambda m: XQuantCache.from_model(m, XQuantConfig(bits=4, group_size=32, rope_store="cos_sin")),
    ),
    "kivi": (
        "llama-gqa",
        lambda m: KIVICache.from_model(m, KIVIConfig(bits=2, group_size=16, residual_length=8)),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_nbytes_equals_storage_really_held(tiny, case):
    arch, make = CASES[case]
    model = tiny(arch)
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), make(model) as cache:
        model(input_ids=ids, past_key_values=cache, use_cache=True)  # prefill: window cut from the prompt
        assert cache.nbytes() == held_storage_bytes(cache)
        if isinstance(cache, XQuantCache):
            assert cache.nbytes() == expected_xquant_nbytes(cache, 2, 40)  # no pinned prompt, nothing extra
        for t in range(3):
            model(input_ids=ids[:, t : t + 1], past_key_values=cache, use_cache=True)
        assert cache.nbytes() == held_storage_bytes(cache)
        cache.crop(-1)
        cache.batch_select_indices(torch.tensor([1]))
        assert cache.nbytes() == held_storage_bytes(cache)


def test_factor_bytes_reported_separately(tiny):
    model = tiny("llama-gqa")
    with XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=16)) as cache:
        lat = [lat for layer in cache.layers for lat in (layer.lk, layer.lv)]
        expect = sum(t.numel() * t.element_size() for lt in lat for t in (lt.u, lt.m))
        assert cache.factor_nbytes() == expect > 0
        assert cache.memory_report()["factor_bytes"] == expect
        assert held_storage_bytes(cache) == cache.nbytes() == 0  # factors are not in nbytes()
    with XQuantCache.from_model(tiny("llama"), XQuantConfig(bits=4, group_size=16)) as mha:
        assert mha.factor_nbytes() == 0


_PEAK_SCRIPT = textwrap.dedent(
    """
    import ctypes, torch
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 65536)  # M_MMAP_THRESHOLD fixed: large temporaries are mmapped, RSS tracks them
    libc.mallopt(-1, 65536)  # M_TRIM_THRESHOLD
    from xquant.quant import dequantize, quantize
    def hwm():
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
    q = quantize(torch.randn(1, 4096, 512), {bits}, 128, "{axis}")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current RSS
    base = hwm()
    y = dequantize(q)
    print(hwm() - base, y.numel() * y.element_size(), q.codes.numel())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS via /proc")
@pytest.mark.parametrize("bits,axis", [(3, "token"), (2, "channel")])
def test_dequantize_peak_memory_is_bounded(bits, axis):
    """Old code: +80 MiB to dequantize a 1 MiB store into a 8 MiB fp32 tensor (int64 unpacking)."""
    r = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT.format(bits=bits, axis=axis)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    peak, out_bytes, _ = map(int, r.stdout.split())
    assert out_bytes == 4096 * 512 * 4
    assert peak < out_bytes + 6 * 2**20, f"dequantize peaked at +{peak / 2**20:.1f} MiB"


def test_chunked_dequantize_equals_one_shot(monkeypatch):
    import xquant.quant as qm

    g = torch.Generator().manual_seed(7)
    for axis in ("token", "channel"):
        x = torch.randn(3, 64, 48, generator=g)
        q = qm.quantize(x, 3, 16, axis)
        codes = qm.unpack_bits(q.codes, 3, 48).float()
        rep = 16 if axis == "token" else 16
        dim = -1 if axis == "token" else -2
        ref = codes * q.scale.float().repeat_interleave(rep, dim) + q.zero.float().repeat_interleave(rep, dim)
        monkeypatch.setattr(qm, "DEQUANT_CHUNK_ELEMENTS", 200)  # many uneven chunks
        assert torch.equal(qm.dequantize(q), ref)
        monkeypatch.undo()
        assert torch.equal(qm.dequantize(q), ref)
