"""Issue 21 (1): save_pretrained + iha_attn.from_pretrained restores the exact patched model."""

import pytest
import torch

import iha_attn
from iha_attn.hf import patch_model_with_iha
from paperworks_shared.models import tiny_causal_lm


@pytest.mark.parametrize(
    "arch,layers,rope",
    [("llama", "all", "virtual"), ("mistral", "schedule:1:1", "virtual"), ("qwen2", [1], "token"), ("qwen3", "schedule:2:1", "virtual")],
)  # fmt: skip
def test_save_reload_gives_identical_logits_and_generate(tmp_path, arch, layers, rope):
    model = tiny_causal_lm(arch, seed=2, num_hidden_layers=3)
    patch_model_with_iha(model, layers=layers, P=2, init="identity_noise", init_std=0.3, rope_mode=rope, seq_len=16)  # fmt: skip
    model.save_pretrained(tmp_path)
    loaded = iha_attn.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
        g1 = model.generate(ids, max_new_tokens=5, do_sample=False)
        g2 = loaded.generate(ids, max_new_tokens=5, do_sample=False)
    assert torch.equal(g1, g2)
    for i, layer in enumerate(model.model.layers):
        a, b = layer.self_attn, loaded.model.layers[i].self_attn
        assert hasattr(a, "iha_mixing") == hasattr(b, "iha_mixing")
        if hasattr(a, "iha_mixing"):
            assert a.iha_cfg == b.iha_cfg
            assert b.iha_mixing.alpha_q.dtype == torch.float32
    assert loaded.config.iha == model.config.iha


def test_from_pretrained_refuses_a_plain_checkpoint(tmp_path):
    tiny_causal_lm("llama").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no usable 'iha' entry"):
        iha_attn.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        iha_attn.from_pretrained(tmp_path / "missing")
