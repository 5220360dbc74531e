"""Acceptance: with bits=16, XQuantCache reproduces DynamicCache exactly (DESIGN.md §3.4 tests 1-2)."""

import pytest
import torch
from transformers import DynamicCache

from xquant import KIVICache, KIVIConfig, XQuantCache, XQuantConfig

ARCHS = ["llama", "llama-gqa", "mistral", "qwen2", "qwen3"]


def _stepwise_logits(model, ids, cache, steps, attn=None):
    """Prefill then greedy decode `steps` tokens by hand; returns tokens and per-step logits."""
    out = model(input_ids=ids, attention_mask=attn, past_key_values=cache, use_cache=True)
    logits, toks = [out.logits[:, -1]], []
    pos = (attn.long().cumsum(-1) - 1).clamp(min=0) if attn is not None else None
    for _ in range(steps):
        nxt = logits[-1].argmax(-1, keepdim=True)
        toks.append(nxt)
        kw = {}
        if attn is not None:
            attn = torch.cat([attn, torch.ones_like(nxt)], -1)
            pos = pos[:, -1:] + 1
            kw = {"attention_mask": attn, "position_ids": pos}
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True, **kw)
        logits.append(out.logits[:, -1])
    return torch.cat(toks, -1), torch.stack(logits, 1)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cl", [False, True])
def test_bits16_logits_and_greedy_equal_dynamic_cache(tiny, arch, cl):
    model = tiny(arch, num_hidden_layers=3)
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(1))
    ref_t, ref_l = _stepwise_logits(model, ids, DynamicCache(config=model.config), 8)
    cfg = XQuantConfig(bits=16, base_bits=16, cross_layer=cl, base_layer=1, residual_length=0)
    with XQuantCache.from_model(model, cfg) as cache:
        t, lg = _stepwise_logits(model, ids, cache, 8)
    assert torch.equal(t, ref_t)
    torch.testing.assert_close(lg, ref_l, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_bits16_generate_left_padded_batch(tiny, arch):
    model = tiny(arch)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 256, (3, 10), generator=g)
    attn = torch.ones_like(ids)
    attn[0, :4] = 0  # left padding, so position_ids are not arange
    attn[1, :1] = 0
    ids[attn == 0] = 256
    kw = dict(max_new_tokens=32, do_sample=False, attention_mask=attn, pad_token_id=256)
    ref = model.generate(ids, past_key_values=DynamicCache(config=model.config), **kw)
    cache = XQuantCache.from_model(model, XQuantConfig(bits=16))
    out = model.generate(ids, past_key_values=cache, **kw)
    cache.detach()
    assert torch.equal(out, ref)
    t_ref, l_ref = _stepwise_logits(model, ids, DynamicCache(config=model.config), 6, attn)
    with XQuantCache.from_model(model, XQuantConfig(bits=16)) as c2:
        t, lg = _stepwise_logits(model, ids, c2, 6, attn)
    assert torch.equal(t, t_ref)
    torch.testing.assert_close(lg, l_ref, atol=1e-5, rtol=1e-5)


def test_continued_generation_from_nonzero_start(tiny):
    """Two generate calls on one cache (chat continuation): positions must continue, not restart."""
    model = tiny("qwen2")
    ids = torch.randint(0, 256, (1, 7), generator=torch.Generator().manual_seed(3))
    ref_cache = DynamicCache(config=model.config)
    r1 = model.generate(ids, max_new_tokens=5, do_sample=False, past_key_values=ref_cache)
    more = torch.cat([r1, torch.tensor([[65, 66, 67]])], -1)
    r2 = model.generate(more, max_new_tokens=6, do_sample=False, past_key_values=ref_cache)
    with XQuantCache.from_model(model, XQuantConfig(bits=16)) as cache:
        o1 = model.generate(ids, max_new_tokens=5, do_sample=False, past_key_values=cache)
        o2 = model.generate(
            torch.cat([o1, torch.tensor([[65, 66, 67]])], -1),
            max_new_tokens=6,
            do_sample=False,
            past_key_values=cache,
        )
    assert torch.equal(o1, r1) and torch.equal(o2, r2)


@pytest.mark.parametrize("pre_rope", [True, False])
def test_kivi_bits16_equal(tiny, pre_rope):
    model = tiny("llama-gqa")
    ids = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(4))
    ref = model.generate(
        ids, max_new_tokens=12, do_sample=False, past_key_values=DynamicCache(config=model.config)
    )
    with KIVICache.from_model(model, KIVIConfig(bits=16, pre_rope=pre_rope)) as cache:
        out = model.generate(ids, max_new_tokens=12, do_sample=False, past_key_values=cache)
    assert torch.equal(out, ref)


def test_simulate_bits16_loss_equals_plain_forward(tiny):
    from xquant import simulate_loss

    model = tiny("llama")
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(5))
    ref = model(input_ids=ids, labels=ids).loss.item()
    for cfg in (
        XQuantConfig(bits=16, residual_length=0),
        XQuantConfig(bits=16, base_bits=16, cross_layer=True, base_layer=0),
        KIVIConfig(bits=16),
    ):
        assert abs(simulate_loss(model, ids, cfg) - ref) < 1e-5
    # and quantization really changes it
    assert abs(simulate_loss(model, ids, XQuantConfig(bits=2, group_size=16, residual_length=0)) - ref) > 1e-4


def test_bits16_beam_search_and_crop(tiny):
    """reorder_cache (beam search) and crop (speculative rollback) act on the stored X consistently."""
    model = tiny("llama")
    ids = torch.randint(0, 256, (1, 8), generator=torch.Generator().manual_seed(6))
    kw = dict(max_new_tokens=6, do_sample=False, num_beams=2)
    ref = model.generate(ids, past_key_values=DynamicCache(config=model.config), **kw)
    with XQuantCache.from_model(model, XQuantConfig(bits=16)) as cache:
        out = model.generate(ids, past_key_values=cache, **kw)
    assert torch.equal(out, ref)
    # crop: roll back 3 tokens of a 4-bit per-token cache, then continue == never having fed them
    cfg = XQuantConfig(bits=4, group_size=32, residual_length=0)
    with torch.no_grad(), XQuantCache.from_model(model, cfg) as a, XQuantCache.from_model(model, cfg) as b:
        model(input_ids=ids, past_key_values=a, use_cache=True)
        model(input_ids=torch.tensor([[1, 2, 3]]), past_key_values=a, use_cache=True)
        assert a.is_croppable
        a.crop(-3)
        model(input_ids=ids, past_key_values=b, use_cache=True)
        assert a.get_seq_length() == b.get_seq_length() == 8 and a.nbytes() == b.nbytes()
        la = model(input_ids=torch.tensor([[7]]), past_key_values=a, use_cache=True).logits
        lb = model(input_ids=torch.tensor([[7]]), past_key_values=b, use_cache=True).logits
    torch.testing.assert_close(la, lb)
