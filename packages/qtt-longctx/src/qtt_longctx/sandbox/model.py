"""The sandbox model: a tiny Llama trained from scratch on the synthetic tasks, cached on disk.

The loss weights the answer digits of in-context queries (``?ab7``) and of the final question 1 and every
other token 0.1, so the few hundred CPU steps mostly go into learning retrieval (keys and values are random
and unpredictable anyway) while the model stays a next-token predictor on every position, which is what
qTTT's span loss (Eq. 3.1) trains on. Trained with **random position offsets** (design notes §3.5): each training row of ≤ `seq_len` tokens is
placed at positions ``o, o+1, ...`` with o uniform in ``[0, max_positions − seq_len]``, so every RoPE
position used by the long evaluation contexts was seen in training and the accuracy decay we measure at
long context is score dilution, not position extrapolation. The trained model is saved under
``$PAPERWORKS_CACHE/qtt-sandbox/<key>/`` (`paperworks_shared.cache`) and reloaded on later calls.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from paperworks_shared.cache import get_or_build
from paperworks_shared.models import BOS_ID, PAD_ID, byte_tokenizer, load_model, save_model, tiny_causal_lm

from .tasks import training_texts


@dataclass
class SandboxSettings:
    """Model size and training schedule of the sandbox model (all part of the cache key)."""

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    max_positions: int = 2048
    steps: int = 1500
    batch_size: int = 12
    seq_len: int = 144
    max_pairs: int = 28
    lr: float = 5e-3
    requery_frac: float = 0.5
    other_token_weight: float = 0.1
    seed: int = 0

    def config_overrides(self) -> dict:
        return dict(
            num_hidden_layers=self.layers,
            hidden_size=self.hidden,
            intermediate_size=2 * self.hidden,
            num_attention_heads=self.heads,
            num_key_value_heads=self.heads,
            max_position_embeddings=self.max_positions,
            attn_implementation="eager",
        )


PRESETS = {
    "smoke": SandboxSettings(steps=40, batch_size=8),
    "cpu": SandboxSettings(),
    "gpu": SandboxSettings(layers=4, hidden=128, steps=3000, batch_size=32, seq_len=384, max_pairs=72),
}


def _batch(texts: list[str], settings: SandboxSettings, rng: random.Random):
    rows = [rng.choice(texts).encode()[: settings.seq_len - 1] for _ in range(settings.batch_size)]
    L = max(len(r) for r in rows) + 1
    ids = torch.full((len(rows), L), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, 0] = BOS_ID
        ids[i, 1 : 1 + len(r)] = torch.tensor(list(r))
    # per-target weights: 1 for the value after "?xy" (a retrieval event), `other_token_weight` elsewhere
    is_answer = torch.zeros_like(ids, dtype=torch.bool)
    is_answer[:, 3:] = ids[:, :-3] == ord("?")
    weights = torch.where(is_answer, 1.0, settings.other_token_weight)
    weights[ids == PAD_ID] = 0.0
    offs = torch.tensor([rng.randint(0, settings.max_positions - L) for _ in rows])
    pos = offs[:, None] + torch.arange(L)[None]
    return ids, weights, pos


def train_sandbox_model(settings: SandboxSettings | None = None, progress: bool = True, cache: bool = True):
    """Train (or load from the cache) the sandbox model; returns (model, tokenizer, metrics).

    The cache goes through `paperworks_shared.cache.get_or_build`: concurrent callers wait on a file lock
    for one trainer, which writes into a private staging folder published by an atomic rename."""
    settings = settings or SandboxSettings()
    key = {"sandbox": asdict(settings), "v": 4}
    if not cache:
        model, metrics = _train(settings, progress)
        return model, byte_tokenizer(), metrics
    trained: dict = {}

    def build(staging):
        model, metrics = _train(settings, progress)
        save_model(model, byte_tokenizer(), staging)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1))
        trained.update(model=model, metrics=metrics)

    path, _ = get_or_build("qtt-sandbox", key, build)
    if trained:  # this process trained it: no need to reload what is in memory
        return trained["model"], byte_tokenizer(), trained["metrics"]
    model, tok = load_model(path)
    model.set_attn_implementation("eager")
    return model, tok, json.loads((path / "metrics.json").read_text())


def _train(settings: SandboxSettings, progress: bool):
    texts = training_texts(4000, settings.max_pairs, settings.seed, settings.requery_frac)
    rng = random.Random(settings.seed)
    model = tiny_causal_lm("llama", seed=settings.seed, **settings.config_overrides())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01, betas=(0.9, 0.95))
    warm = max(1, settings.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm if s < warm else 0.1 + 0.45 * (1 + math.cos(math.pi * (s - warm) / settings.steps))
        ),
    )
    t0, losses = time.time(), []
    for _ in tqdm(range(settings.steps), desc="train qTTT sandbox model", disable=not progress, leave=False):
        ids, weights, pos = _batch(texts, settings, rng)
        logits = model(input_ids=ids, position_ids=pos).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        loss = (nll * weights[:, 1:]).sum() / weights[:, 1:].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    metrics = {
        "train_loss_first": losses[0],
        "train_loss_last": sum(losses[-20:]) / len(losses[-20:]),
        "train_seconds": time.time() - t0,
        "parameters": sum(p.numel() for p in model.parameters()),
        "settings": asdict(settings),
    }
    return model, metrics


def sandbox_model(scale: str = "cpu", progress: bool = True):
    """The sandbox model for a benchmark scale ("smoke" | "cpu" | "gpu"), trained once and cached."""
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; choose one of {tuple(PRESETS)}")
    return train_sandbox_model(PRESETS[scale], progress=progress)
