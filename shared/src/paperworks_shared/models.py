"""Tiny offline causal LMs built from configs (no hub), and a byte-level tokenizer built locally.

Architectures the packages must support: Llama (MHA and GQA), Mistral, Qwen2 (q/k/v bias),
Qwen3 (q/k RMSNorm). Everything round-trips through `save_pretrained` / `from_pretrained`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

#: Architectures with a tiny config here. "llama-gqa" is Llama with fewer KV heads than query heads.
ARCHITECTURES = ("llama", "llama-gqa", "mistral", "qwen2", "qwen3")

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
PAD_ID, BOS_ID, EOS_ID = 256, 257, 258
VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>: {% endif %}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode map, so every byte is one vocabulary entry."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (one token per UTF-8 byte, ids 0-255, plus <pad>=256, <bos>=257, <eos>=258).

    Built with the `tokenizers` library from nothing: no download, identical on every machine.
    Padding is on the left, as batched generation needs.
    """
    b2u = _bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    for i, tok in enumerate(SPECIAL_TOKENS):
        vocab[tok] = 256 + i
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=False))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        padding_side="left",
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(arch: str = "llama", **overrides) -> PretrainedConfig:
    """Config of a tiny model of `arch` (one of ARCHITECTURES); keyword overrides win.

    Defaults: hidden 64, 2 layers, 4 heads of dim 16 (2 KV heads for llama-gqa / mistral / qwen3),
    MLP 128, byte vocabulary, 2048 positions. Qwen2 keeps its q/k/v bias, Qwen3 its q/k norm.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {ARCHITECTURES}")
    base: dict[str, Any] = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
        initializer_range=0.05,
    )
    if arch in ("llama-gqa", "mistral", "qwen3"):
        base["num_key_value_heads"] = 2
    base.update(overrides)
    base.setdefault("head_dim", base["hidden_size"] // base["num_attention_heads"])
    if arch in ("llama", "llama-gqa"):
        return LlamaConfig(**base)
    if arch == "mistral":
        base.setdefault("sliding_window", None)
        return MistralConfig(**base)
    if arch == "qwen2":
        base.setdefault("use_sliding_window", False)
        return Qwen2Config(**base)
    return Qwen3Config(**base)


def tiny_causal_lm(
    arch: str = "llama", *, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides
) -> PreTrainedModel:
    """A randomly initialised (seeded) tiny causal LM of `arch`, in eval mode."""
    config = tiny_config(arch, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, path: str | Path) -> Path:
    """Save model and tokenizer side by side in a local folder (what any HF loader expects)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_model(
    path: str | Path, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a model + tokenizer from a local folder (never the hub)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a saved model folder (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    return model, tok
