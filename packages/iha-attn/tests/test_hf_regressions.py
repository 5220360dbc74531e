"""Issue 18 (iha part) and issue 21 regressions on the transformers path, against the numpy oracle."""

import pytest
import torch
from iha_test_oracle import iha_oracle

from iha_attn.hf import patch_model_with_iha
from paperworks_shared.models import tiny_causal_lm


def _capture_layer0(model):
    """Record layer 0's attention input (hidden states) and output on every call."""
    rec = {"in": [], "out": []}
    attn = model.model.layers[0].self_attn
    h1 = attn.register_forward_pre_hook(lambda m, a, kw: rec["in"].append((a[0] if a else kw["hidden_states"]).detach()), with_kwargs=True)  # fmt: skip
    h2 = attn.register_forward_hook(lambda m, a, out: rec["out"].append(out[0].detach()))
    return rec, (h1, h2)


def _oracle_layer0(model, h, mask_mode, q_last=None, key_keep=None):
    attn = model.model.layers[0].self_attn
    cfg = model.config
    B, N, _ = h.shape
    H, Hkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    mx = attn.iha_mixing
    with torch.no_grad():
        q = attn.q_proj(h).view(B, N, H, d).transpose(1, 2)
        k = attn.k_proj(h).view(B, N, Hkv, d).transpose(1, 2)
        v = attn.v_proj(h).view(B, N, Hkv, d).transpose(1, 2)
        if q_last is not None:
            q = q[:, :, -q_last:]
        o = iha_oracle(q, k, v, mx.alpha_q, mx.alpha_k, mx.alpha_v, mx.R, mask=mask_mode, rope="virtual",
                       theta=cfg.rope_parameters["rope_theta"], key_keep=key_keep)  # fmt: skip
        return attn.o_proj(o.reshape(B, o.shape[1], H * d).float())


@pytest.mark.parametrize("arch,mask", [("llama", "flat_causal"), ("llama-gqa", "token_causal")])
def test_hf_virtual_rope_matches_oracle_full_and_decode(arch, mask):
    """The patched HF layer (token RoPE from the model + the extra virtual rotation) equals the oracle's
    rotation at n·P+p, for the full forward and for the last step of cached decoding."""
    model = tiny_causal_lm(arch, seed=5)
    torch.manual_seed(0)
    patch_model_with_iha(model, P=3, init="normal", rope_mode="virtual", mask_mode=mask)
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(5))
    rec, hooks = _capture_layer0(model)
    with torch.no_grad():
        model(ids)
        h_full, out_full = rec["in"][-1], rec["out"][-1]
        out = model(ids[:, :6], use_cache=True)
        for t in range(6, 9):
            out = model(ids[:, t : t + 1], past_key_values=out.past_key_values, use_cache=True)
    for hk in hooks:
        hk.remove()
    torch.testing.assert_close(out_full, _oracle_layer0(model, h_full, mask), atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(rec["out"][-1], _oracle_layer0(model, h_full, mask, q_last=1), atol=2e-5, rtol=2e-5)  # fmt: skip


@pytest.mark.parametrize(
    "arch,kw",
    [("mistral", dict(sliding_window=4)), ("qwen2", dict(use_sliding_window=True, sliding_window=4, max_window_layers=0))],
)  # fmt: skip
def test_sliding_window_cached_decode_with_virtual_rope(arch, kw):
    """Issue 18: the window cache drops old tokens, so its index is not the position (Δlogit 0.2 before)."""
    model = tiny_causal_lm(arch, seed=1, **kw)
    patch_model_with_iha(model, P=2, init="identity_noise", init_std=0.3, rope_mode="virtual")
    ids = torch.randint(0, 256, (1, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :3], use_cache=True)
        steps = [out.logits]
        for t in range(3, 11):
            out = model(ids[:, t : t + 1], past_key_values=out.past_key_values, use_cache=True)
            steps.append(out.logits)
    assert out.past_key_values.layers[0].keys.shape[2] < 11  # the window cache really dropped tokens
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rope", ["virtual", "token"])
def test_left_padded_batched_generate_equals_per_row(rope):
    """Issue 18: left-padded rows get position ids that start after the pads; virtual RoPE must not mix
    position ids (queries) with cache indices (keys)."""
    model = tiny_causal_lm("llama-gqa", seed=1)
    patch_model_with_iha(model, P=2, init="identity_noise", init_std=0.3, rope_mode=rope)
    g = torch.Generator().manual_seed(2)
    a, b = torch.randint(3, 256, (1, 7), generator=g), torch.randint(3, 256, (1, 4), generator=g)
    pad = model.config.pad_token_id
    batch = torch.cat([a, torch.cat([torch.full((1, 3), pad), b], 1)], 0)
    am = torch.tensor([[1] * 7, [0] * 3 + [1] * 4])
    with torch.no_grad():
        gen = model.generate(batch, attention_mask=am, max_new_tokens=6, do_sample=False, pad_token_id=pad)
        ga = model.generate(a, max_new_tokens=6, do_sample=False)
        gb = model.generate(b, max_new_tokens=6, do_sample=False)
        # and the logits of the padded row's real tokens equal the unpadded row's
        lp = model(batch, attention_mask=am).logits[1, 3:]
        lb = model(b).logits[0]
    assert gen[0, 7:].tolist() == ga[0, 7:].tolist()
    assert gen[1, 7:].tolist() == gb[0, 4:].tolist()
    torch.testing.assert_close(lp, lb, atol=1e-5, rtol=1e-5)


def test_patch_refuses_nonsense():
    model = tiny_causal_lm("llama", num_hidden_layers=5)
    with pytest.raises(ValueError, match="local_window"):
        patch_model_with_iha(model, layers="schedule:4:1", local_window=0)
    with pytest.raises(ValueError, match="selects no layer"):
        patch_model_with_iha(model, layers="schedule:0:1", seq_len=16)
    with pytest.raises(ValueError, match="selects no layer"):
        patch_model_with_iha(tiny_causal_lm("llama", num_hidden_layers=1), layers="schedule:4:1", seq_len=16)
    with pytest.raises(ValueError, match="selects no layer"):
        patch_model_with_iha(model, layers=[])
    mixes = patch_model_with_iha(model, P=2, init="normal")
    before = [m.alpha_q.detach().clone() for m in mixes]
    with pytest.raises(ValueError, match="already patched"):
        patch_model_with_iha(model, P=2)
    assert all(torch.equal(m.alpha_q, b) for m, b in zip(mixes, before))  # the trained mixing is untouched
    assert all(model.model.layers[i].self_attn.iha_mixing is mixes[i] for i in range(5))


def test_bf16_cast_keeps_alpha_and_R_fp32():
    """Issue 18: README promises α and R stay fp32 (cast at use); model.to(bf16) used to cast them."""
    model = tiny_causal_lm("llama", seed=0)
    mixes = patch_model_with_iha(model, P=2, init="identity_noise", init_std=0.3, rope_mode="virtual")
    ref = {n: t.detach().clone() for n, t in mixes[0].state_dict().items()}
    freqs = mixes[0].inv_freq.clone()
    model.to(torch.bfloat16)
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    for m in mixes:
        assert all(p.dtype == torch.float32 for p in m.parameters())
        assert m.inv_freq.dtype == torch.float32
    for n, t in mixes[0].state_dict().items():
        assert torch.equal(t, ref[n])  # not rounded through bf16
    assert torch.equal(mixes[0].inv_freq, freqs)
    ids = torch.randint(0, 256, (1, 6))
    with torch.no_grad():
        assert model(ids).logits.dtype == torch.bfloat16
    model.half()
    assert all(p.dtype == torch.float32 for m in mixes for p in m.parameters())
