"""Issue 22: prefix reuse (fork / deepcopy) and sink tokens (22.6), lossless half precision (22.5),
Triton on every rematerialization path (22.4). Each test failed on the code before the change."""

import copy

import pytest
import torch
from transformers import DynamicCache

from xquant import KIVICache, KIVIConfig, XQuantCache, XQuantConfig
from xquant.accounting import expected_xquant_nbytes
from xquant.quant import quantize

GEN = dict(do_sample=False, pad_token_id=256, output_logits=True, return_dict_in_generate=True)


def _ids(n, seed, b=1):
    return torch.randint(0, 256, (b, n), generator=torch.Generator().manual_seed(seed))


def _make(model, cfg):
    return (
        KIVICache.from_model(model, cfg)
        if isinstance(cfg, KIVIConfig)
        else XQuantCache.from_model(model, cfg)
    )


def _snapshot(cache):
    return [t.clone() for t in cache.tensors()]


# -- 22.6 prefix reuse ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["llama", "llama-gqa"])
@pytest.mark.parametrize("cross_layer", [False, True])
def test_prefix_caching_recipe_with_deepcopy_equals_fresh_runs(tiny, arch, cross_layer):
    """The transformers recipe: fill on a prompt, deepcopy, continue two suffixes; bits=16 must give
    exactly what a fresh DynamicCache run on the whole prompt gives."""
    model = tiny(arch)
    prefix = _ids(20, 1)
    cfg = XQuantConfig(bits=16, base_bits=16, cross_layer=cross_layer, base_layer=0)
    prompt_cache = XQuantCache.from_model(model, cfg)
    with torch.no_grad():
        model(input_ids=prefix, past_key_values=prompt_cache, use_cache=True)
    for seed in (2, 3):
        full = torch.cat([prefix, _ids(6, seed)], 1)
        past = copy.deepcopy(prompt_cache)
        assert past is not prompt_cache and past.get_seq_length() == 20
        out = model.generate(full, past_key_values=past, max_new_tokens=12, **GEN)
        ref = model.generate(
            full, past_key_values=DynamicCache(config=model.config), max_new_tokens=12, **GEN
        )
        assert torch.equal(out.sequences, ref.sequences)
        torch.testing.assert_close(torch.stack(out.logits), torch.stack(ref.logits), atol=1e-5, rtol=1e-5)
        past.detach()
    assert prompt_cache.get_seq_length() == 20  # the prompt cache itself was never extended
    prompt_cache.detach()


CONFIGS = {
    "mha-4": ("llama", XQuantConfig(bits=4, group_size=32, residual_length=8, keep_first_n=2)),
    "gqa-latent-3": ("llama-gqa", XQuantConfig(bits=3, group_size=16, residual_length=16, keep_first_n=1)),
    "cl-2": ("llama", XQuantConfig(bits=2, group_size=32, residual_length=4, cross_layer=True, base_layer=1)),
    "kivi*-2": ("llama-gqa", KIVIConfig(bits=2, group_size=16, residual_length=16, keep_first_n=1)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fork_of_quantized_cache_is_independent_and_equals_same_schedule(tiny, name):
    """A fork continues exactly like a fresh cache filled with the same prompt; the original and the
    other forks are untouched; model pieces are shared, stored tensors are not."""
    arch, cfg = CONFIGS[name]
    model = tiny(arch)
    prefix = _ids(37, 4)
    base, fresh = _make(model, cfg), _make(model, cfg)
    with torch.no_grad():
        model(input_ids=prefix, past_key_values=base, use_cache=True)
        model(input_ids=prefix, past_key_values=fresh, use_cache=True)
    before = _snapshot(base)
    fork_a, fork_b = base.fork(), copy.deepcopy(base)
    mine = {t.untyped_storage().data_ptr() for t in base.tensors()}
    assert not mine & {t.untyped_storage().data_ptr() for t in fork_a.tensors()}
    for la, lb in zip(base.layers, fork_a.layers):
        assert la.spec is lb.spec and la.backend is lb.backend
        for f in ("lk", "lv", "lkv"):
            assert getattr(la, f, None) is getattr(lb, f, None)  # SVD factors shared, not copied
    full_a = torch.cat([prefix, _ids(5, 5)], 1)
    full_b = torch.cat([prefix, _ids(5, 6)], 1)
    out_a = model.generate(full_a, past_key_values=fork_a, max_new_tokens=10, **GEN)
    ref_a = model.generate(full_a, past_key_values=fresh, max_new_tokens=10, **GEN)
    assert torch.equal(torch.stack(out_a.logits), torch.stack(ref_a.logits))
    model.generate(full_b, past_key_values=fork_b, max_new_tokens=10, **GEN)
    assert fork_b.get_seq_length() == fork_a.get_seq_length() == 37 + 5 + 9
    after = _snapshot(base)
    assert base.get_seq_length() == 37 and len(after) == len(before)
    assert all(torch.equal(x, y) for x, y in zip(before, after))
    # the original still continues like a fresh cache, after its forks were used
    fresh2 = _make(model, cfg)
    with torch.no_grad():
        model(input_ids=prefix, past_key_values=fresh2, use_cache=True)
    out = model.generate(full_b, past_key_values=base, max_new_tokens=6, **GEN)
    ref = model.generate(full_b, past_key_values=fresh2, max_new_tokens=6, **GEN)
    assert torch.equal(torch.stack(out.logits), torch.stack(ref.logits))
    for c in (base, fresh, fork_a, fork_b, fresh2):
        c.detach()


# -- 22.6 keep_first_n sink tokens -----------------------------------------------------------------
def test_keep_first_n_holds_first_tokens_exactly_and_groups_start_after_them(tiny):
    model = tiny("llama-gqa")
    ids = _ids(2 + 48, 7)
    cfg = XQuantConfig(bits=2, group_size=16, residual_length=16, keep_first_n=2)
    one_shot = XQuantCache.from_model(model, cfg)
    with torch.no_grad():
        model(input_ids=ids, past_key_values=one_shot, use_cache=True)
    # streaming one token at a time = one shot, with the head split off first (store level, same input)
    from xquant.store import TokenStore

    x = torch.randn(1, 50, 32, generator=torch.Generator().manual_seed(3))
    for axis in ("channel", "token"):
        a, b = (TokenStore(2, 16, axis, 16, keep_first_n=2) for _ in range(2))
        a.push(x)
        f = a.take_flush()
        a.add(f)
        for t in range(50):
            b.push(x[:, t : t + 1])
            f = b.take_flush()
            if f is not None:
                b.add(f)
        assert a.n_head == b.n_head == 2 and torch.equal(a.head, x[:, :2]) and torch.equal(b.head, x[:, :2])
        assert torch.equal(a.q.codes, b.q.codes) and torch.equal(a.q.scale, b.q.scale)
        assert torch.equal(a.window, b.window) and len(a) == len(b) == 50
    # the head is the exact latent of the first two tokens; per-channel groups start at token 2
    cap = {}

    def grab(module, args, kwargs):
        cap.setdefault("x", kwargs.get("hidden_states", args[0] if args else None))

    hook = model.model.layers[0].self_attn.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(input_ids=ids)
    hook.remove()
    layer = one_shot.layers[0]
    lat = cap["x"] @ layer.lk.u
    assert torch.equal(layer.ks.head, lat[:, :2])
    ref = quantize(lat[:, 2:34], 2, 16, "channel")
    assert torch.equal(layer.ks.q.codes, ref.codes) and torch.equal(layer.ks.q.scale, ref.scale)
    assert one_shot.nbytes() == expected_xquant_nbytes(one_shot, 1, ids.shape[1])
    # crop reaches into the head once window and codes are gone (per-token store)
    mha = XQuantCache.from_model(
        tiny("llama"), XQuantConfig(bits=4, group_size=32, residual_length=0, keep_first_n=3)
    )
    with torch.no_grad():
        tiny("llama")(input_ids=ids[:, :6], past_key_values=mha, use_cache=True)
    mha.crop(-4)
    assert mha.get_seq_length() == 2 and mha.layers[0].xs.n_head == 2 and mha.layers[0].xs.q is None
    for c in (one_shot, mha):
        c.detach()


def test_keep_first_n_protects_a_sink_token_from_per_channel_groups(tiny):
    """A massive first token (attention-sink style) wrecks the per-channel groups it belongs to; with
    keep_first_n=1 it stays exact and the other tokens' keys are quantized among themselves."""
    model = tiny("llama-gqa")
    errs = {}
    for n0 in (0, 1):
        cfg = KIVIConfig(bits=2, group_size=16, residual_length=0, keep_first_n=n0)
        cache = KIVICache.from_model(model, cfg)
        layer = cache.layers[0]
        k = torch.randn(1, 33, layer.spec.kv_dim, generator=torch.Generator().manual_seed(9))
        k[:, 0] *= 200.0  # the sink
        layer.ks.push(k)
        f = layer.ks.take_flush()
        layer.ks.add(f)
        got = layer.ks.full(torch.float32)
        errs[n0] = (got[:, 1 : 1 + 16] - k[:, 1 : 1 + 16]).abs().max().item()
        if n0:
            assert torch.equal(got[:, :1], k[:, :1])
            ref = quantize(k[:, 1:33], 2, 16, "channel")
            assert torch.equal(layer.ks.q.codes, ref.codes) and torch.equal(layer.ks.q.zero, ref.zero)
        cache.detach()
    assert errs[1] < errs[0] / 4, errs


def test_keep_first_n_validated():
    with pytest.raises(ValueError, match="keep_first_n"):
        XQuantConfig(keep_first_n=-1)
    with pytest.raises(ValueError, match="keep_first_n"):
        KIVIConfig(keep_first_n=1.5)


# -- 22.5 bits=16 exact in half precision ------------------------------------------------------------
HALF_CASES = [
    ("llama-gqa", torch.float16, dict()),
    ("qwen3", torch.bfloat16, dict()),
    ("llama-gqa", torch.bfloat16, dict(cross_layer=True, base_layer=0, base_bits=16)),
    ("llama", torch.bfloat16, dict(cross_layer=True, base_layer=1, base_bits=16)),
    ("qwen2", torch.float16, dict(cross_layer=True, base_layer=0, base_bits=16)),
]


@pytest.mark.parametrize("arch,dtype,kw", HALF_CASES, ids=lambda v: str(v))
def test_lossless_half_precision_agrees_with_dynamic_cache(arch, dtype, kw):
    """bits=16 in fp16/bf16 on the GQA latent and CL paths: greedy tokens identical to DynamicCache
    over 40 steps, logits within half-precision rounding (the latent/accumulator are kept in fp32)."""
    from paperworks_shared.models import tiny_causal_lm

    model = tiny_causal_lm(arch, seed=0, dtype=dtype)
    ids = _ids(24, 11, b=2)
    ref = model.generate(ids, past_key_values=DynamicCache(config=model.config), max_new_tokens=40, **GEN)
    with XQuantCache.from_model(model, XQuantConfig(bits=16, **kw)) as cache:
        out = model.generate(ids, past_key_values=cache, max_new_tokens=40, **GEN)
    assert torch.equal(out.sequences, ref.sequences)
    lo, lr = torch.stack(out.logits).float(), torch.stack(ref.logits).float()
    tol = 0.02 if dtype == torch.float16 else 0.1
    assert (lo - lr).abs().max().item() <= tol * max(1.0, lr.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lossless_latent_kv_error_is_one_rounding(dtype):
    """The rematerialized K/V of a bits=16 GQA latent differ from the model's own K/V by at most one
    rounding step of the half dtype (two ulps, relative), not by the bf16 factor error of before."""
    from paperworks_shared.models import tiny_causal_lm

    model = tiny_causal_lm("llama-gqa", seed=0, dtype=dtype, num_hidden_layers=2)
    ids = _ids(30, 12)
    seen = {}

    def cb(i, k, v, kh, vh):
        seen[i] = (k, v, kh, vh)

    cache = XQuantCache.from_model(model, XQuantConfig(bits=16), simulate=True)
    cache.state.on_simulated = cb
    with torch.no_grad():
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    cache.detach()
    eps = torch.finfo(dtype).eps
    for k, v, kh, vh in seen.values():
        for a, b in ((k, kh), (v, vh)):
            rel = ((a.float() - b.float()).abs() / b.float().abs().clamp_min(1e-2)).max().item()
            assert rel <= 2 * eps, rel


# -- issue 20.2: `cache=` next to `past_key_values=` -------------------------------------------------
def test_cache_keyword_gives_the_same_outputs_when_transformers_accepts_it(tiny):
    """Newer transformers spell the argument `cache=`; the hooks follow either keyword. Skipped where
    the installed transformers does not accept `cache=` (5.20 does not)."""
    import inspect

    model = tiny("llama-gqa")
    if "cache" not in inspect.signature(model.model.forward).parameters:
        pytest.skip("the installed transformers has no `cache=` argument (only past_key_values=)")
    ids = _ids(20, 13)
    cfg = XQuantConfig(bits=4, group_size=16, residual_length=4)
    with XQuantCache.from_model(model, cfg) as a, XQuantCache.from_model(model, cfg) as b:
        out_a = model.generate(ids, past_key_values=a, max_new_tokens=8, **GEN)
        out_b = model.generate(ids, cache=b, max_new_tokens=8, **GEN)
    assert torch.equal(torch.stack(out_a.logits), torch.stack(out_b.logits))


def test_hooks_follow_the_cache_keyword():
    """The capture hook treats `cache=` like `past_key_values=` (the part we can test on any version)."""
    from torch import nn

    from xquant.hooks import CaptureHooks

    class Attn(nn.Module):
        def forward(self, x, **kwargs):
            return x

    mod = Attn()
    hooks = CaptureHooks({0: mod})
    owner, other = object(), object()

    class Ref:
        def __call__(self):
            return owner

    hooks.cache_ref = Ref()
    x = torch.ones(1, 2, 3)
    mod(x, cache=other)
    assert 0 not in hooks.slots  # another cache: nothing captured
    mod(x, cache=owner)
    assert torch.equal(hooks.slots[0].x, x)
    hooks.remove()
