"""The four ways to spend inference compute that the paper compares at one FLOP budget (§4, App. G).

All methods share one prefill of ``prompt[:-1]`` and one decode loop; they differ only in how they use a
budget of B decode-token-equivalents (Eq. 3.2):

* ``in_context`` — answer directly (B unused);
* ``qttt`` — N = B / (2k) query-only steps on k-token spans, then answer (Algorithm 1);
* ``thinking`` — generate B free tokens after the prompt, then re-ask (`reask_ids`) and answer
  (a tiny sandbox model has no trained chain of thought, so "thinking" is plain continued generation —
  a labelled approximation of the paper's CoT baseline);
* ``self_consistency`` — N samples, each thinking B/N tokens (sampled) and answering; majority vote.

An answer is scored from the first answer step's logits restricted to `candidates` (e.g. the ten digits or
the choice letters), or, without candidates, is the token tuple decoded up to `answer_tokens` / a stop token
(self-consistency then votes over whole answers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Union

import torch

from .adapt import adapt
from .config import QTTConfig
from .decoding import decode
from .flops import match_steps

METHODS = ("in_context", "qttt", "thinking", "self_consistency")
# a candidate token id (scored answers) or the decoded token tuple (free-form answers)
Prediction = Union[int, tuple[int, ...]]


@dataclass
class Answer:
    """One method's answer to one request."""

    method: str
    prediction: Prediction
    needle_mass: float = float("nan")
    extra: dict = field(default_factory=dict)


def _pick(logits: torch.Tensor, candidates: Sequence[int] | None) -> int:
    if not candidates:
        return int(torch.argmax(logits))
    cand = torch.as_tensor(list(candidates), dtype=torch.long)
    return int(cand[torch.argmax(logits[cand])])


def _strip(tokens: list[int], stop_tokens: Sequence[int]) -> tuple[int, ...]:
    out = []
    for t in tokens:
        if t in stop_tokens:
            break
        out.append(t)
    return tuple(out)


def answer(
    model,
    prompt_ids: torch.Tensor,
    method: str,
    *,
    budget_tokens: int,
    config: QTTConfig | None = None,
    candidates: Sequence[int] | None = None,
    reask_ids: Sequence[int] | None = None,
    needle_positions: Sequence[int] | None = None,
    sc_samples: int = 4,
    temperature: float = 0.7,
    top_k: int = 20,
    top_p: float = 0.8,
    seed: int = 0,
    answer_tokens: int = 16,
    stop_tokens: Sequence[int] = (),
) -> Answer:
    """Answer one prompt with `method` under a budget of `budget_tokens` decode-token-equivalents."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if budget_tokens < 0:
        raise ValueError("budget_tokens must be >= 0")
    base = config or QTTConfig()
    steps = match_steps(budget_tokens, base.span_len) if method == "qttt" else 0
    cfg = replace(base, steps=steps)
    gen = torch.Generator().manual_seed(seed)
    with adapt(model, prompt_ids, cfg) as s:
        if method in ("in_context", "qttt"):
            n_out = 1 if candidates else answer_tokens
            res = s.generate(n_out, needle_positions=needle_positions, stop_tokens=stop_tokens)
            pred: Prediction = (
                _pick(res.first_logits, candidates) if candidates else _strip(res.tokens, stop_tokens)
            )
            return Answer(method, pred, res.mean_needle_mass, {"losses": list(s.losses)})
        reask = torch.as_tensor(list(reask_ids or []), dtype=torch.long)
        n = 1 if method == "thinking" else max(1, sc_samples)
        think = budget_tokens // n
        votes: list[Prediction] = []
        masses: list[float] = []
        for _ in range(n):
            cache = s.frozen_cache().decoding_cache()
            last = prompt_ids.reshape(1, -1)[:, -1:]
            sample = method == "self_consistency"
            if think > 0:
                thought = decode(
                    model,
                    cache,
                    last.to(model.device),
                    think,
                    do_sample=sample,
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    generator=gen,
                )
                last = torch.tensor([thought.tokens[-1:]], dtype=torch.long)
            x = torch.cat([last, reask[None]], 1).to(model.device)
            if not candidates:  # free-form answer: decode up to answer_tokens
                res = decode(
                    model,
                    cache,
                    x,
                    answer_tokens,
                    stop_tokens=stop_tokens,
                    needle_positions=needle_positions,
                    do_sample=sample,
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    generator=gen,
                )
                votes.append(_strip(res.tokens, stop_tokens))
                masses.append(res.mean_needle_mass)
                continue
            res = decode(model, cache, x, 1, needle_positions=needle_positions)
            if sample:
                logits = res.first_logits / max(temperature, 1e-6)
                cand = torch.as_tensor(list(candidates))
                pred = int(cand[torch.multinomial(torch.softmax(logits[cand], -1), 1, generator=gen)])
            else:
                pred = _pick(res.first_logits, candidates)
            votes.append(pred)
            masses.append(res.mean_needle_mass)
        pred = Counter(votes).most_common(1)[0][0]
        return Answer(method, pred, float(sum(masses) / len(masses)), {"votes": votes, "think_tokens": think})
