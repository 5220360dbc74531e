"""transformers patch (DESIGN.md §3.3 test 11): exact retrofit, cached == uncached, real-token cache length."""

import pytest
import torch

from iha_attn.hf import iha_layer_schedule, iha_param_groups, patch_model_with_iha
from paperworks_shared.models import tiny_causal_lm

ARCHS = ["llama", "llama-gqa", "mistral", "qwen2", "qwen3"]


def _accepts_cache_kw(model) -> bool:
    import inspect

    return "cache" in inspect.signature(model.forward).parameters


def _cache_kw(model, cache) -> dict:
    """Pass a transformers cache as `cache=` where the installed transformers takes it (issue 20.2; newer
    versions deprecate `past_key_values=`), else as `past_key_values=`."""
    return {"cache": cache} if _accepts_cache_kw(model) else {"past_key_values": cache}


def test_cache_keyword_matches_past_key_values():
    from transformers import DynamicCache

    model = tiny_causal_lm("llama", seed=1)
    patch_model_with_iha(model, P=2, init="identity_noise", init_std=0.3)
    if not _accepts_cache_kw(model):
        pytest.skip("the installed transformers has no cache= argument (past_key_values= only)")
    ids = torch.randint(0, 256, (1, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = model(ids[:, :4], past_key_values=DynamicCache(config=model.config), use_cache=True)
        b = model(ids[:, :4], cache=DynamicCache(config=model.config), use_cache=True)
        a2 = model(ids[:, 4:], past_key_values=a.past_key_values, use_cache=True).logits
        b2 = model(ids[:, 4:], cache=b.past_key_values, use_cache=True).logits
    torch.testing.assert_close(a2, b2)


@pytest.mark.parametrize("arch", ARCHS)
def test_mha_exact_patch_keeps_logits(arch):
    model = tiny_causal_lm(arch, seed=0)
    ids = torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids).logits
        mixes = patch_model_with_iha(model, P=2, init="mha_exact", rope_mode="token", mask_mode="flat_causal")
        out = model(ids).logits
    assert len(mixes) == model.config.num_hidden_layers
    assert model.config._attn_implementation == "iha"
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # perturbing α must change the function (the patch is really in the path)
        mixes[0].alpha_q.add_(0.3)
        assert (model(ids).logits - ref).abs().max() > 1e-3


@pytest.mark.parametrize("arch,rope,mask", [("llama", "virtual", "flat_causal"), ("llama-gqa", "token", "token_causal"), ("qwen3", "virtual", "token_causal")])  # fmt: skip
def test_cached_decoding_equals_full_forward(arch, rope, mask):
    model = tiny_causal_lm(arch, seed=1)
    patch_model_with_iha(model, P=2, init="identity_noise", init_std=0.3, rope_mode=rope, mask_mode=mask)
    from transformers import DynamicCache

    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).logits
        cache = DynamicCache(config=model.config)
        out = model(ids[:, :5], **_cache_kw(model, cache), use_cache=True)
        steps = [out.logits]
        for t in range(5, 9):
            out = model(ids[:, t : t + 1], **_cache_kw(model, out.past_key_values), use_cache=True)
            steps.append(out.logits)
            assert out.past_key_values.get_seq_length() == t + 1  # real tokens
        k = out.past_key_values.layers[0].keys
    assert k.shape[2] == 9 and k.shape[1] == model.config.num_key_value_heads  # original-size cache
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    g1 = model.generate(ids[:, :4], max_new_tokens=5, do_sample=False, use_cache=True)
    g2 = model.generate(ids[:, :4], max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(g1, g2)


@pytest.mark.skipif(
    not __import__("iha_attn.kernels.triton_iha", fromlist=["x"]).available(), reason="no triton"
)
def test_triton_backend_in_patched_model():
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(2))
    outs = []
    for be in ("sdpa", "triton"):
        model = tiny_causal_lm("llama-gqa", seed=3)
        torch.manual_seed(0)  # same random α/R in both models
        patch_model_with_iha(model, P=2, init="normal", rope_mode="virtual", backend=be)
        with torch.no_grad():
            outs.append(model(ids).logits)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)
    padded = torch.tensor([[0, 1, 1, 1, 1, 1]])
    with pytest.raises(ValueError, match="triton"), torch.no_grad():  # padding: the kernel cannot express it
        model(ids, attention_mask=padded)


def test_schedule_and_layer_selection():
    assert iha_layer_schedule(10) == ["iha_local"] * 4 + ["mha_global"] + ["iha_local"] * 4 + ["mha_global"]
    assert iha_layer_schedule(3)[-1] == "mha_global"
    model = tiny_causal_lm("llama", seed=0, num_hidden_layers=5)
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        ref = model(ids).logits
    mixes = patch_model_with_iha(model, layers="schedule:4:1", P=2, seq_len=16)
    assert len(mixes) == 4
    attn = model.model.layers
    assert attn[0].self_attn.iha_cfg["window"] == 16 // 8 and not hasattr(attn[4].self_attn, "iha_mixing")
    with torch.no_grad():  # local windows change the function; the global layer stays plain attention
        assert (model(ids).logits - ref).abs().max() > 1e-4
    model2 = tiny_causal_lm("llama", seed=0)
    assert len(patch_model_with_iha(model2, layers=[1], P=3)) == 1
    groups = iha_param_groups(model2, lr=1e-3)
    assert groups[1]["weight_decay"] == 0.0 and sum(p.numel() for p in groups[1]["params"]) == 4 * 16 * 3


def test_patch_errors():
    model = tiny_causal_lm("llama")
    with pytest.raises(ValueError, match="P"):
        patch_model_with_iha(model, P=0)
    with pytest.raises(ValueError, match="out of range"):
        patch_model_with_iha(model, layers=[5])
    with pytest.raises(ValueError, match="layers="):
        patch_model_with_iha(model, layers="every-other")
    with pytest.raises(ValueError, match="seq_len"):
        patch_model_with_iha(model, layers="schedule:4:1")
    with pytest.raises(ValueError, match="mha_exact"):
        patch_model_with_iha(model, rope_mode="virtual", init="mha_exact")

    class Fake(torch.nn.Module):
        class config:  # noqa: N801
            model_type = "gpt2"

    with pytest.raises(ValueError, match="unsupported model architecture 'gpt2'"):
        patch_model_with_iha(Fake())
