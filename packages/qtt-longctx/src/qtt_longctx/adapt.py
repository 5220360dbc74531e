"""`adapt(model, input_ids, config)`: one prefill, N query-only steps on the frozen cache, answer, restore.

Algorithm 1 of the paper with the resolutions of DESIGN.md §1.5:

1. prefill ``ids[:-1]`` once under ``torch.no_grad()`` (never inference mode: DESIGN.md pitfall 11) and freeze the
   resulting K/V in a read-only `FrozenPrefixCache` (detached; no gradient into it, no copy per step);
2. each step: sample a span start t, run ``ids[t:t+k]`` at absolute positions t..t+k-1 against the frozen
   cache (span queries see the stale, original-weight K/V of every position ≤ their own), loss = mean
   next-token NLL of ``ids[t+1:t+k+1]`` (Eq. 3.1), and update only a zero-initialised fp32 delta on W_Q
   (or a LoRA on q_proj) with AdamW/SGD, grad clipping and decoupled weight decay (App. D);
3. `session.generate(...)` feeds the last prompt token through the *adapted* model on a copy of the
   frozen cache (the first answer token sees the adaptation: DESIGN.md pitfall 7) and decodes the answer;
4. on exit — normal or exception — the hooks are removed, requires_grad flags and train/eval mode are
   restored: the model's parameters were never written, so it is bit-identical to before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers.cache_utils import DynamicCache

from . import flops as _flops
from . import spans as _spans
from .cache import FrozenPrefixCache
from .compat import cache_kwargs
from .config import QTTConfig
from .decoding import DecodeResult, decode
from .delta import QueryDelta, find_query_projections
from .grouped import span_attention


def _as_ids(input_ids) -> torch.Tensor:
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(
            f"qTTT adapts one request at a time: input_ids must be (T,) or (1, T), got {tuple(ids.shape)}"
        )
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must be integer token ids, got dtype {ids.dtype}")
    if ids.shape[1] < 2:
        raise ValueError(
            "input_ids needs at least 2 tokens (a prefix to cache and a last token to answer from)"
        )
    return ids.long()


def check_positions(model, n_positions: int, what: str) -> None:
    """Raise if a forward would place a token at a position >= the model's `max_position_embeddings`."""
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and n_positions > max_pos:
        raise ValueError(
            f"{what} needs {n_positions} positions but the model has only {max_pos} "
            "(max_position_embeddings); shorten the context, the suffix or max_new_tokens"
        )


def check_request(model, ids: torch.Tensor) -> None:
    """Raise a clear error for inputs qTTT cannot handle (before anything is changed)."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "qTTT cannot run under torch.inference_mode(): the prefill K/V would be inference tensors that "
            "cannot be saved for backward. Call adapt() outside inference_mode (it uses no_grad itself)."
        )
    find_query_projections(model)
    inference = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_inference()]
    if inference:
        raise RuntimeError(
            f"{len(inference)} model tensors (e.g. {inference[0]!r}) were created under torch.inference_mode(); "
            "qTTT backpropagates through the model and autograd cannot use inference tensors. Create or load "
            "the model outside inference_mode (torch.no_grad() is fine). Nothing was changed."
        )
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and ids.shape[1] > max_pos:
        raise ValueError(
            f"context of {ids.shape[1]} tokens is longer than the model's {max_pos} positions "
            "(max_position_embeddings)"
        )
    vocab = getattr(model.config, "vocab_size", None)
    if vocab is not None and (int(ids.max()) >= vocab or int(ids.min()) < 0):
        raise ValueError(f"input_ids contain ids outside the vocabulary [0, {vocab})")


class QTTSession:
    """State of one qTTT request. Create through `adapt(...)`, which guarantees restoration."""

    def __init__(self, model, input_ids, config: QTTConfig | None = None, progress: bool = False):
        self.model = model
        self.config = config or QTTConfig()
        ids = _as_ids(input_ids)
        check_request(model, ids)
        self.input_ids = ids.to(model.device)
        self.progress = progress
        self.losses: list[float] = []
        self.spans: list[tuple[int, int]] = []
        self.times: dict[str, float] = {"prefill": 0.0, "steps": 0.0, "decode": 0.0}
        self.decoded_tokens = 0
        self.generations: list[int] = []  # tokens fed after the context, per generate() call
        self.delta: QueryDelta | None = None
        self.cache: FrozenPrefixCache | None = None
        self._saved_flags: list[tuple[torch.nn.Parameter, bool]] = []
        self._was_training = model.training
        self._closed = False

    # --- properties ------------------------------------------------------------------------------
    @property
    def T(self) -> int:
        return self.input_ids.shape[1]

    @property
    def adapted(self) -> bool:
        """Whether adaptation ran (False below `min_context` or with steps=0)."""
        return bool(self.spans)

    def frozen_cache(self) -> FrozenPrefixCache:
        """The frozen prefill cache; a clear error before `prefill()` has run."""
        if self.cache is None:
            raise RuntimeError("no frozen cache yet: the prefill has not run (use adapt(), or call run())")
        return self.cache

    # --- the algorithm ---------------------------------------------------------------------------
    def _freeze_model(self) -> None:
        self._saved_flags = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in self._saved_flags:
            p.requires_grad_(False)
        self.model.eval()  # dropout off during adaptation (DESIGN.md §1.5)

    def prefill(self) -> FrozenPrefixCache:
        """Step 1: one no-grad forward over ids[:-1]; its K/V become the read-only frozen cache."""
        t0 = time.perf_counter()
        prefill = DynamicCache(config=self.model.config)
        with torch.no_grad():  # the cache object is filled in place (whatever the output calls it)
            self.model(input_ids=self.input_ids[:, :-1], use_cache=True, **cache_kwargs(self.model, prefill))
        self.cache = FrozenPrefixCache.from_cache(prefill)
        self.times["prefill"] += time.perf_counter() - t0
        return self.cache

    def span_loss(self, start: int, span_len: int) -> torch.Tensor:
        """Eq. 3.1 on ids[start:start+span_len] through the frozen cache (mean NLL, fp32)."""
        ids = self.input_ids
        x = ids[:, start : start + span_len]
        y = ids[0, start + 1 : start + span_len + 1]
        pos = torch.arange(start, start + span_len, device=ids.device)[None]
        cache = self.frozen_cache()
        with cache.window(start), span_attention(self.model):
            logits = self.model(
                input_ids=x, use_cache=True, position_ids=pos, **cache_kwargs(self.model, cache)
            ).logits
        return F.cross_entropy(logits[0].float(), y)

    def span_logits(self, start: int, span_len: int) -> torch.Tensor:
        """Logits of the span forward through the frozen cache (no grad), for checks and diagnostics."""
        ids = self.input_ids
        pos = torch.arange(start, start + span_len, device=ids.device)[None]
        cache = self.frozen_cache()
        with torch.no_grad(), cache.window(start), span_attention(self.model):
            return self.model(
                input_ids=ids[:, start : start + span_len],
                **cache_kwargs(self.model, cache),
                use_cache=True,
                position_ids=pos,
            ).logits

    def _optimizer(self, params):
        cfg = self.config
        if cfg.optimizer == "adamw":  # decay applied by hand to the effective W_Q (see QueryDelta)
            return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=0.0)
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)

    def run(self) -> QTTSession:
        """Prefill and take `config.steps` query-only steps (none below `min_context`)."""
        cfg = self.config
        self._freeze_model()
        self.prefill()
        self.delta = QueryDelta(
            self.model, cfg.mode, cfg.layers, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed
        ).attach()
        if cfg.steps == 0 or self.T < cfg.min_context:
            return self
        n_cached = self.frozen_cache().length
        k = _spans.effective_span_len(n_cached, cfg.span_len)
        sampler = _spans.resolve(cfg.span_sampler, cfg.question_len)
        gen = torch.Generator().manual_seed(cfg.seed)
        params = list(self.delta.parameters())
        opt = self._optimizer(params)  # fresh optimizer state per request (no leakage)
        t0 = time.perf_counter()
        bar = tqdm(range(cfg.steps), desc="qTTT", disable=not self.progress, leave=False)
        for _ in bar:
            start = _spans.checked_start(sampler, n_cached, k, gen)
            with torch.enable_grad():
                loss = self.span_loss(start, k)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"qTTT span loss became {loss.item()} (lr {cfg.lr} too large?)")
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            self.delta.decoupled_weight_decay(cfg.lr, cfg.weight_decay)
            self.losses.append(float(loss.detach()))
            self.spans.append((start, k))
            bar.set_postfix(loss=f"{self.losses[-1]:.3f}")
        self.times["steps"] += time.perf_counter() - t0
        return self

    # --- answering -------------------------------------------------------------------------------
    def generate(
        self,
        max_new_tokens: int = 32,
        *,
        suffix_ids: Sequence[int] | torch.Tensor | None = None,
        needle_positions: Sequence[int] | None = None,
        **sampling,
    ) -> DecodeResult:
        """Decode the answer from a copy of the frozen cache, the last prompt token going through the
        adapted W_Q. `suffix_ids` are fed after the prompt before generation starts (e.g. a re-asked
        question after thinking). Sampling kwargs: do_sample, temperature, top_k, top_p, eos_token_id,
        generator, stop_tokens."""
        if self._closed:
            raise RuntimeError("this qTTT session is closed (the model has been restored)")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        first = self.input_ids[:, -1:]
        if suffix_ids is not None:
            suffix = torch.as_tensor(suffix_ids, device=first.device).reshape(1, -1).long()
            first = torch.cat([first, suffix], 1)
        check_positions(self.model, self.T - 1 + first.shape[1] + max_new_tokens - 1, "generation")
        t0 = time.perf_counter()
        res = decode(
            self.model,
            self.frozen_cache().decoding_cache(),
            first,
            max_new_tokens,
            needle_positions=needle_positions,
            **sampling,
        )
        self.times["decode"] += time.perf_counter() - t0
        n_fed = len(res.tokens) + first.shape[1] - 1
        self.decoded_tokens += n_fed
        self.generations.append(n_fed)
        return res

    def next_token_logits(self) -> torch.Tensor:
        """Logits for the first answer token (last prompt token through the adapted model)."""
        return self.generate(1).first_logits

    def account(self) -> dict:
        """FLOPs (App. C units) and wall times of this request so far.

        Each step is charged its real span (causal prefix of the span, not the whole context), each
        generation is charged from the context it started at (every generate() call decodes from the
        frozen cache again), and `memory` reports the frozen K/V bytes held."""
        acc = _flops.account(self.model.config, self.T, spans=self.spans, decode_tokens=self.generations)
        return {**acc.to_dict(), "seconds": dict(self.times), "memory": self.memory_account()}

    def memory_account(self) -> dict:
        """Bytes the request holds (frozen K/V) and the largest per-step attention transient that remains
        with the grouped span attention (`grouped.py`): eager keeps the span's attention probabilities
        (H·k·(t+k) per layer) for the backward; SDPA's fused backward computes dK/dV of the un-repeated
        window of one layer at a time and discards them. No per-step copy of the K/V window either way."""
        if self.cache is None:
            return {"frozen_kv_bytes": 0, "step_attention_transient_bytes": 0}
        pairs = self.cache.tensors()
        kv = sum(t.numel() * t.element_size() for pair in pairs for t in pair)
        longest = max((t + k for t, k in self.spans), default=0)
        cfg = self.model.config
        k0 = pairs[0][0]
        if cfg._attn_implementation == "sdpa":
            # dK + dV of one layer's window [0, longest)
            transient = 2 * k0.shape[0] * k0.shape[1] * longest * k0.shape[-1] * k0.element_size()
        else:
            heads = int(cfg.num_attention_heads)
            transient = max(
                (len(pairs) * heads * k * (t + k) * k0.element_size() for t, k in self.spans), default=0
            )
        return {"frozen_kv_bytes": kv, "step_attention_transient_bytes": transient}

    # --- restoration -----------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the query update and restore flags/mode. Safe to call twice; runs on every exit path.

        Every restoration step is attempted even if an earlier one fails; the first failure is raised
        afterwards (and `adapt` attaches it as a note to the error that is already in flight instead)."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        if self.delta is not None:
            try:
                self.delta.remove()
            except Exception as e:  # pragma: no cover - hook removal does not fail in practice
                errors.append(e)
        for p, flag in self._saved_flags:
            if p.requires_grad != flag:
                try:
                    p.requires_grad_(flag)
                except Exception as e:
                    errors.append(e)
        try:
            self.model.train(self._was_training)
        except Exception as e:  # pragma: no cover
            errors.append(e)
        if errors:
            raise RuntimeError(
                f"qTTT could not fully restore the model ({len(errors)} error(s)); first: {errors[0]}"
            ) from errors[0]


@contextmanager
def adapt(
    model, input_ids, config: QTTConfig | None = None, *, progress: bool = False
) -> Iterator[QTTSession]:
    """Context manager of one qTTT request: ``with adapt(model, ids, cfg) as s: s.generate(...)``.

    The model is restored bit-exactly on exit, also when the body or the adaptation raises.
    """
    session = QTTSession(model, input_ids, config, progress=progress)
    try:
        session.run()
        yield session
    except BaseException as e:
        # restore, but never let a restoration error hide the error that got us here
        try:
            session.close()
        except Exception as close_error:
            if hasattr(e, "add_note"):
                e.add_note(f"qTTT: restoring the model afterwards also failed: {close_error}")
        raise
    session.close()
