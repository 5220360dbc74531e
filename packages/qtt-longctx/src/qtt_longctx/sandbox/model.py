"""The sandbox model: a tiny Llama trained from scratch on the synthetic tasks, cached on disk.

Why the earlier model (cache key v4) was near chance beyond short contexts (issue 19.3), and what this
one changes (DESIGN.md §3.5):

* **Relative distances never seen in training.** It trained on rows cut at 144 tokens; random absolute
  position offsets cover every RoPE *position*, but RoPE attention depends on the *distance* between the
  query and the needle, and distances beyond 144 were never trained. Now every batch is built from
  complete documents whose haystack size is drawn log-uniformly in ``[min_pairs, max_pairs]``, with
  ``max_pairs`` at least the longest benchmark haystack, so every query-needle distance the evaluation
  uses was trained on. A length curriculum grows the haystack cap from ``min_pairs`` to ``max_pairs`` over the
  first half of the steps: the retrieval circuit (an induction-style copy keyed on two letters) forms on
  short documents, where the needle is not yet diluted, and is then stretched to long ones.
* **Questions cut off.** Truncating a document at ``seq_len`` dropped its final question (the needle
  retrieval the benchmark scores) for every long document; documents are now generated to fit whole.
* **Compute per step.** A fixed token budget per batch (``batch_tokens``: many short rows or a few long
  ones), so long documents do not multiply the cost of a step.

What is kept: the loss weights the answer digits of in-context queries (``?ab7``) and of the final
question 1 and every other token ``other_token_weight`` (keys and values are random, so only retrieval is
learnable), the model stays a next-token predictor on every position (qTTT's span loss, Eq. 3.1, trains
on that), and every row is placed at a random absolute offset in ``[0, max_positions − len]``. The model is
small on purpose (2 layers, d = 64): its logit margin cannot grow like log T (Lemma 2.3), so accuracy still
falls with the haystack (score dilution by the near-duplicate keys), which is where qTTT is supposed to help.

The trained model is saved under ``$PAPERWORKS_CACHE/qtt-sandbox/<key>/`` through
`paperworks_shared.cache.get_or_build` and reloaded on later calls.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from paperworks_shared.cache import get_or_build
from paperworks_shared.models import BOS_ID, PAD_ID, byte_tokenizer, load_model, save_model, tiny_causal_lm

from .tasks import TASKS, make_example


@dataclass
class SandboxSettings:
    """Model size and training schedule of the sandbox model (all part of the cache key)."""

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    max_positions: int = 2048
    rope_theta: float = 10000.0
    steps: int = 1500
    batch_tokens: int = 2048
    min_pairs: int = 2
    max_pairs: int = 160
    warmup_frac: float = 0.5
    lr: float = 1e-2
    requery_frac: float = 0.5
    other_token_weight: float = 0.1
    tasks: tuple[str, ...] = field(default=("kv",))
    seed: int = 0

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"SandboxSettings.tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if not 2 <= self.min_pairs <= self.max_pairs:
            raise ValueError(f"need 2 <= min_pairs <= max_pairs, got {self.min_pairs}, {self.max_pairs}")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if self.steps < 1 or self.batch_tokens < 1:
            raise ValueError("steps and batch_tokens must be >= 1")

    def config_overrides(self) -> dict:
        return dict(
            num_hidden_layers=self.layers,
            hidden_size=self.hidden,
            intermediate_size=2 * self.hidden,
            num_attention_heads=self.heads,
            num_key_value_heads=self.heads,
            max_position_embeddings=self.max_positions,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            attn_implementation="eager",
        )


PRESETS = {
    "smoke": SandboxSettings(steps=40, batch_tokens=512, max_pairs=32),
    "cpu": SandboxSettings(),
    "full": SandboxSettings(),
    "gpu": SandboxSettings(layers=4, hidden=128, steps=3000, batch_tokens=16384, max_pairs=256),
}


def _document(settings: SandboxSettings, n_pairs: int, rng: random.Random) -> str:
    ex = make_example(rng.choice(settings.tasks), n_pairs, rng, settings.requery_frac)
    return ex["context"] + ex["question"] + ex["answer"] + "\n"


def haystack_size(settings: SandboxSettings, progress: float, rng: random.Random) -> int:
    """Records of one training document at `progress` in [0, 1] of training: log-uniform in
    [min_pairs, cap], where cap grows linearly from min_pairs to max_pairs over the first `warmup_frac`
    of the steps (length curriculum) and is max_pairs afterwards."""
    lo, hi = settings.min_pairs, settings.max_pairs
    if settings.warmup_frac > 0 and progress < settings.warmup_frac:
        hi = max(lo, round(lo + (hi - lo) * progress / settings.warmup_frac))
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def _batch(settings: SandboxSettings, rng: random.Random, progress: float = 1.0):
    """One training batch of whole documents of one haystack size: (ids, weights, position_ids)."""
    n = haystack_size(settings, progress, rng)
    first = _document(settings, n, rng)
    rows = [first.encode()]
    while (len(rows) + 1) * (len(first) + 1) <= settings.batch_tokens:
        rows.append(_document(settings, n, rng).encode())
    L = max(len(r) for r in rows) + 1
    if L > settings.max_positions:
        raise ValueError(
            f"a {n}-record document needs {L} positions > max_positions {settings.max_positions}"
        )
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
    key = {"sandbox": asdict(settings), "v": 5}
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


def _schedule(opt: torch.optim.Optimizer, steps: int):
    from paperworks_shared.optim import warmup_cosine

    return warmup_cosine(opt, steps, warmup_steps=max(1, steps // 20), floor=0.1)


def _train(settings: SandboxSettings, progress: bool):
    rng = random.Random(f"sandbox-train-{settings.seed}")
    # trained with SDPA (causal, no padding mask needed: rows are right-padded and padded targets weigh 0),
    # evaluated with eager attention (needle attention mass needs the probabilities); same function
    model = tiny_causal_lm(
        "llama", seed=settings.seed, **{**settings.config_overrides(), "attn_implementation": "sdpa"}
    )
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = _schedule(opt, settings.steps)
    t0, losses = time.time(), []
    bar = tqdm(
        range(settings.steps),
        desc="train qTTT sandbox model (first use only, a few minutes)",
        disable=not progress,
        leave=False,
    )
    for step in bar:
        ids, weights, pos = _batch(settings, rng, step / settings.steps)
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
    model.set_attn_implementation("eager")
    metrics = {
        "train_loss_first": losses[0],
        "train_loss_last": sum(losses[-20:]) / len(losses[-20:]),
        "train_seconds": time.time() - t0,
        "parameters": sum(p.numel() for p in model.parameters()),
        # JSON-normalised (tuples -> lists), so a fresh run returns what a cache hit reads back
        "settings": json.loads(json.dumps(asdict(settings))),
    }
    return model, metrics


def sandbox_model(scale: str = "cpu", progress: bool = True, seed: int = 0):
    """The sandbox model for a benchmark scale ("smoke" | "cpu" | "full" | "gpu") and training seed,
    trained once and cached."""
    if scale not in PRESETS:
        raise ValueError(f"unknown scale {scale!r}; choose one of {tuple(PRESETS)}")
    from dataclasses import replace

    return train_sandbox_model(replace(PRESETS[scale], seed=seed), progress=progress)
