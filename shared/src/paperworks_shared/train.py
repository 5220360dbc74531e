"""Train the tiny causal LMs on the offline corpus (or any texts), once, with an on-disk cache.

`train_tiny_lm(...)` is keyed by (architecture, config, training settings, data fingerprint): the
first call trains (minutes on 2 CPU cores) and saves under $PAPERWORKS_CACHE/lm/<key>/; every later
call with the same key loads the saved model instead.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from .cache import cache_dir, is_complete, lock_path, mark_complete
from .corpus import corpus_fingerprint, corpus_text
from .files import file_lock, publish_dir, wait_note
from .models import BOS_ID, byte_tokenizer, load_model, save_model, tiny_causal_lm, tiny_config
from .optim import warmup_cosine


@dataclass
class TrainSettings:
    """Optimisation settings of `train_tiny_lm` (all part of the cache key)."""

    steps: int = 600
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    eval_batches: int = 8

    def __post_init__(self):
        if self.steps < 1 or self.seq_len < 2 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"invalid training settings: {self}")


@dataclass
class TrainedLM:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    path: Path
    metrics: dict = field(default_factory=dict)
    cache_hit: bool = False


def encode_text(text: str) -> torch.Tensor:
    """Byte ids of `text` as a 1-D long tensor (the byte tokenizer maps UTF-8 byte b to id b)."""
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()


def _windows(ids: torch.Tensor, n: int, seq_len: int, gen: torch.Generator) -> torch.Tensor:
    if len(ids) <= seq_len + 1:
        raise ValueError(f"training text has {len(ids)} tokens, fewer than seq_len+1={seq_len + 1}")
    starts = torch.randint(0, len(ids) - seq_len - 1, (n,), generator=gen)
    batch = torch.stack([ids[s : s + seq_len] for s in starts.tolist()])
    batch[:, 0] = BOS_ID
    return batch


@torch.no_grad()
def evaluate_loss(
    model: PreTrainedModel,
    ids: torch.Tensor,
    seq_len: int,
    batches: int = 8,
    batch_size: int = 16,
    seed: int = 1234,
) -> float:
    """Mean next-token cross-entropy (nats) on fixed random windows of `ids`."""
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    losses = []
    for _ in range(batches):
        x = _windows(ids, batch_size, seq_len, gen).to(model.device)
        losses.append(model(input_ids=x, labels=x).loss.item())
    model.train(was_training)
    return float(sum(losses) / len(losses))


def save_trained(model: PreTrainedModel, path: Path, metrics: dict, key: dict) -> Path:
    """Save a trained tiny model (+ byte tokenizer, metrics.json) to cache folder `path` atomically.

    Written to a private staging folder (unique per writer), marked complete with `key`, then renamed:
    a crash mid-save never leaves a folder that `is_complete` would accept, and concurrent writers
    never share a temp path."""

    def build(staging: Path) -> None:
        save_model(model, byte_tokenizer(), staging)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1))
        mark_complete(staging, key)

    return publish_dir(build, path)


def train_tiny_lm(
    arch: str = "llama",
    *,
    config_overrides: dict | None = None,
    settings: TrainSettings | None = None,
    train_texts: Sequence[str] | None = None,
    val_texts: Sequence[str] | None = None,
    cache: bool = True,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> TrainedLM:
    """Train (or load from cache) a tiny `arch` LM on the shared corpus, or on the given texts.

    Returns the model in eval mode, its tokenizer, the folder it is saved in, and metrics
    (validation loss before and after training, tokens seen, wall time).
    """
    settings = settings or TrainSettings()
    config_overrides = dict(config_overrides or {})
    if train_texts is None:
        train_texts, data_fp = [corpus_text("train")], f"corpus:{corpus_fingerprint()}"
        val_texts = [corpus_text("validation")]
    else:
        if not val_texts:
            raise ValueError("val_texts are required when train_texts are given")
        h = hashlib.sha256()
        for t in list(train_texts) + ["\x00VAL\x00"] + list(val_texts):
            h.update(t.encode())
            h.update(b"\x00")
        data_fp = f"texts:{h.hexdigest()[:16]}"
    config = tiny_config(arch, **config_overrides)
    key = {
        "arch": arch,
        "config": config.to_diff_dict(),
        "settings": asdict(settings),
        "data": data_fp,
        "v": 1,
    }
    path = cache_dir("lm", key)
    if not cache:
        return _train(
            arch, config_overrides, settings, train_texts, val_texts, path, key, False, progress, device
        )
    # Concurrent callers wait for one trainer (file lock) instead of all training and racing to save.
    with file_lock(lock_path(path), message=wait_note(f"tiny {arch} LM {path.name}")):
        if is_complete(path):
            model, tok = load_model(path)
            metrics = json.loads((path / "metrics.json").read_text())
            model = model.to(device)  # type: ignore[arg-type]  # transformers' wrapped .to() confuses mypy
            return TrainedLM(model, tok, path, metrics, cache_hit=True)
        return _train(
            arch, config_overrides, settings, train_texts, val_texts, path, key, True, progress, device
        )


def _train(arch, config_overrides, settings, train_texts, val_texts, path, key, cache, progress, device):
    train_ids = encode_text("\n\n".join(train_texts))
    val_ids = encode_text("\n\n".join(val_texts))
    model = tiny_causal_lm(arch, seed=settings.seed, **config_overrides).to(device)
    t0 = time.time()
    val_before = evaluate_loss(model, val_ids, settings.seq_len, settings.eval_batches)
    gen = torch.Generator().manual_seed(settings.seed)
    opt = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.95)
    )

    # linear warm-up, cosine decay to 10% (the schedule every LM trainer here shares)
    sched = warmup_cosine(opt, settings.steps, warmup_steps=min(settings.warmup, settings.steps), floor=0.1)
    model.train()
    if progress:  # a first call trains for minutes: say so, and where the result is kept (issue 20.3)
        print(
            f"paperworks: first use of this tiny {arch} LM: training it now ({settings.steps} steps; the bar "
            f"below estimates the time left). Cached in {path}; later calls load it in seconds.",
            file=sys.stderr,
        )
    bar = tqdm(range(settings.steps), desc=f"train tiny {arch}", disable=not progress, leave=False)
    train_losses = []
    for _ in bar:
        x = _windows(train_ids, settings.batch_size, settings.seq_len, gen).to(device)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        train_losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    val_after = evaluate_loss(model, val_ids, settings.seq_len, settings.eval_batches)
    metrics = {
        "val_loss_before": val_before,
        "val_loss_after": val_after,
        "train_loss_first": train_losses[0],
        "train_loss_last": sum(train_losses[-20:]) / len(train_losses[-20:]),
        "tokens_seen": settings.steps * settings.batch_size * settings.seq_len,
        "train_seconds": time.time() - t0,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if cache:
        save_trained(model, path, metrics, key)
    return TrainedLM(model, byte_tokenizer(), path, metrics, cache_hit=False)


#: The standard trained tiny LMs per benchmark scale. Every package that wants "a tiny model trained on
#: the corpus" asks `pretrained_tiny(arch, scale)`, so the model is trained once and shared via the cache.
PRESETS: dict[str, tuple[dict, TrainSettings]] = {
    "smoke": ({"num_hidden_layers": 2}, TrainSettings(steps=40, seq_len=128, batch_size=8, eval_batches=2)),
    "cpu": ({"num_hidden_layers": 4}, TrainSettings(steps=400, seq_len=256, batch_size=16)),
    "gpu": (
        {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 4},
        TrainSettings(steps=2000, seq_len=512, batch_size=32, lr=2e-3),
    ),
}


def pretrained_tiny(
    arch: str = "llama", scale: str = "cpu", progress: bool = True, **config_overrides
) -> TrainedLM:
    """The standard tiny `arch` LM trained on the corpus at `scale` ("smoke" | "cpu" | "gpu"), cached."""
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; choose one of {tuple(PRESETS)}")
    overrides, settings = PRESETS[scale]
    device = "cuda" if scale == "gpu" and torch.cuda.is_available() else "cpu"
    return train_tiny_lm(
        arch,
        config_overrides={**overrides, **config_overrides},
        settings=settings,
        progress=progress,
        device=device,
    )
