"""A small decode loop over an explicit cache: greedy or sampled, with needle attention mass.

Used for every method so that in-context, qTTT, thinking and self-consistency differ only in what they
do, not in how they decode. Attention mass (App. E): for an output step, the attention weight on the
target token set summed over the targets, averaged over layers and heads (needs eager attention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import Cache

from .compat import cache_kwargs


@dataclass
class DecodeResult:
    tokens: list[int]
    first_logits: torch.Tensor
    needle_mass: list[float] = field(default_factory=list)

    @property
    def mean_needle_mass(self) -> float:
        return float(sum(self.needle_mass) / len(self.needle_mass)) if self.needle_mass else float("nan")


def _sample(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen) -> int:
    logits = logits.float() / max(temperature, 1e-6)
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)
    if top_p < 1.0:
        sp, si = torch.sort(probs, descending=True)
        keep = torch.cumsum(sp, -1) - sp < top_p
        probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=gen).item())


def needle_mass(attentions: Sequence[torch.Tensor], positions: Sequence[int]) -> float:
    """Attention of the last query on `positions`, summed over them, averaged over layers and heads."""
    idx = torch.as_tensor(list(positions), dtype=torch.long)
    vals = []
    for a in attentions:  # (batch, heads, q, kv)
        if a is None:
            raise RuntimeError(
                "attention weights unavailable: load the model with attn_implementation='eager'"
            )
        vals.append(a[0, :, -1, :].index_select(-1, idx.to(a.device)).sum(-1).mean())
    return float(torch.stack(vals).mean())


@torch.no_grad()
def decode(
    model,
    cache: Cache,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | None = None,
    generator: torch.Generator | None = None,
    needle_positions: Sequence[int] | None = None,
    stop_tokens: Sequence[int] = (),
) -> DecodeResult:
    """Feed `input_ids` (1, n) after what `cache` holds, then generate up to `max_new_tokens` tokens.

    The cache grows (it must be a copy owned by the caller, e.g. `FrozenPrefixCache.decoding_cache()`).
    With `needle_positions`, records the needle attention mass at each output step.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] < 1:
        raise ValueError(f"decode expects input_ids of shape (1, n>=1), got {tuple(input_ids.shape)}")
    targets = list(needle_positions) if needle_positions is not None else []
    want_attn = len(targets) > 0
    if want_attn and model.config._attn_implementation != "eager":
        raise ValueError(
            "needle attention mass needs attn_implementation='eager' (model.set_attn_implementation)"
        )
    stops = set(stop_tokens) | ({eos_token_id} if eos_token_id is not None else set())
    tokens: list[int] = []
    masses: list[float] = []
    first_logits = None
    x = input_ids.to(model.device)
    for _ in range(max_new_tokens):
        start = cache.get_seq_length()
        pos = torch.arange(start, start + x.shape[1], device=x.device)[None]
        out = model(
            input_ids=x,
            use_cache=True,
            position_ids=pos,
            output_attentions=want_attn,
            **cache_kwargs(model, cache),
        )
        logits = out.logits[0, -1]
        if first_logits is None:
            first_logits = logits.detach().float().cpu()
        if want_attn:
            masses.append(needle_mass(out.attentions, targets))
        if do_sample:
            nxt = _sample(logits, temperature, top_k, top_p, generator)
        else:
            nxt = int(torch.argmax(logits).item())
        tokens.append(nxt)
        if nxt in stops:
            break
        x = torch.tensor([[nxt]], device=model.device)
    if first_logits is None:
        raise ValueError("max_new_tokens must be >= 1")
    return DecodeResult(tokens, first_logits, masses)
