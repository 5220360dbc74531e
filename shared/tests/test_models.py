import pytest
import torch

from paperworks_shared.models import (
    ARCHITECTURES,
    BOS_ID,
    EOS_ID,
    PAD_ID,
    VOCAB_SIZE,
    byte_tokenizer,
    load_model,
    save_model,
    tiny_causal_lm,
    tiny_config,
)


def test_byte_tokenizer_is_bytes_and_roundtrips():
    tok = byte_tokenizer()
    text = "héllo, wörld!\n\tZ"
    ids = tok(text)["input_ids"]
    assert ids == list(text.encode("utf-8"))  # one id per UTF-8 byte, id == byte value
    assert tok.decode(ids) == text
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    assert len(tok) == VOCAB_SIZE


def test_left_padding_for_batched_generation():
    tok = byte_tokenizer()
    b = tok(["a", "abc"], padding=True, return_tensors="pt")
    assert b["input_ids"][0].tolist() == [PAD_ID, PAD_ID, ord("a")]
    assert b["attention_mask"][0].tolist() == [0, 0, 1]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_architecture_generates_and_roundtrips(arch, tmp_path):
    model = tiny_causal_lm(arch, seed=3)
    tok = byte_tokenizer()
    cfg = model.config
    if arch == "qwen2":
        assert model.model.layers[0].self_attn.q_proj.bias is not None  # Qwen2 keeps q/k/v bias
    if arch == "qwen3":
        assert hasattr(model.model.layers[0].self_attn, "k_norm")  # Qwen3 has q/k RMSNorm
    if arch in ("llama-gqa", "mistral", "qwen3"):
        assert cfg.num_key_value_heads < cfg.num_attention_heads
    batch = tok(["The cat", "A"], padding=True, return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=PAD_ID)
    assert out.shape == (2, batch["input_ids"].shape[1] + 6)
    save_model(model, tok, tmp_path / arch)
    model2, tok2 = load_model(tmp_path / arch)
    assert type(model2) is type(model)
    with torch.no_grad():
        torch.testing.assert_close(model2(**batch).logits, model(**batch).logits, rtol=0, atol=0)
    out2 = model2.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=PAD_ID)
    assert torch.equal(out, out2)
    assert tok2("xyz")["input_ids"] == tok("xyz")["input_ids"]


def test_seed_determines_weights_and_overrides_apply():
    a, b, c = (
        tiny_causal_lm("llama", seed=1),
        tiny_causal_lm("llama", seed=1),
        tiny_causal_lm("llama", seed=2),
    )
    wa, wb, wc = (m.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert tiny_config("llama", num_hidden_layers=3).num_hidden_layers == 3


def test_unknown_architecture_and_missing_folder_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny architecture 'gpt2'"):
        tiny_config("gpt2")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)
