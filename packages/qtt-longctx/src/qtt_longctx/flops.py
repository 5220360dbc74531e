"""FLOP accounting of qTTT vs thinking tokens (paper App. C, Eq. 3.2) and budget matching.

App. C, for L layers, hidden size d and MLP ratio r (MLP holds 2·r·d² weights per layer):
``C_quad = 2·L·d``, ``C_tok = (4 + 2r)·L·d²``;

* prefill of T tokens: ``F_prefill(T) = C_quad·T² + C_tok·T``
* M thinking tokens after T: ``F_gen(M; T) = C_quad·(M·T + M(M−1)/2) + C_tok·M``
* one qTTT step, span k over a prefix T: ``G_partial(k; T) ≈ 2·(C_quad·k·T + (2 + 2r)·L·k·d²)``
  (forward + backward of the span; no K/V projections since K/V are frozen)

For T ≫ d and k ≪ T the prefill cancels and ``F_gen(M) = N·G_partial`` gives Eq. 3.2: ``M ≈ 2·N·k``.

`G_partial(k; T)` charges every step a span that sees the *whole* context. A real span at absolute
positions ``t ... t+k-1`` sees only the frozen keys ``0 ... t+i`` (bottom-right causal), so
`span_step_flops(shape, t, k)` counts ``k·t + k(k+1)/2`` query-key pairs instead of ``k·T``, and
`account` charges each step its own span (or, for planning, the exact mean under the uniform sampler).
It also reports what the implementation computes beyond App. C: the span's own K/V projections, which
the decoder layer computes and the frozen cache discards (forward only, ``2·d·d_kv`` per token and
layer; ``d_kv = n_kv_heads·head_dim`` is smaller than d with GQA).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def thinking_equivalent(steps: int, span_len: int) -> int:
    """Eq. 3.2: thinking tokens with the FLOPs of `steps` qTTT steps of `span_len` tokens (= 2·N·k)."""
    if steps < 0 or span_len < 0:
        raise ValueError("steps and span_len must be >= 0")
    return 2 * steps * span_len


def match_steps(budget_tokens: int, span_len: int) -> int:
    """qTTT steps that fit a thinking budget of `budget_tokens` (inverse of Eq. 3.2, rounded down)."""
    if span_len < 1 or budget_tokens < 0:
        raise ValueError("span_len must be >= 1 and budget_tokens >= 0")
    return budget_tokens // (2 * span_len)


@dataclass(frozen=True)
class Shape:
    """What App. C needs of a model: layers L, hidden d, MLP ratio r."""

    layers: int
    hidden: int
    mlp_ratio: float
    kv_dim: int | None = None  # n_kv_heads · head_dim (None: = hidden, multi-head attention)

    @classmethod
    def from_config(cls, config) -> Shape:
        """From a transformers config; a gated (SwiGLU) MLP holds 3·d·ff weights, i.e. r = 1.5·ff/d."""
        d = int(config.hidden_size)
        ff = int(getattr(config, "intermediate_size", 4 * d))
        gated = getattr(config, "hidden_act", "silu") in ("silu", "swish", "gelu_pytorch_tanh")
        r = (3 if gated else 2) * ff / (2 * d)
        heads = int(getattr(config, "num_attention_heads", 1) or 1)
        head_dim = int(getattr(config, "head_dim", None) or d // heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        return cls(int(config.num_hidden_layers), d, r, kv_heads * head_dim)

    @property
    def c_quad(self) -> float:
        return 2.0 * self.layers * self.hidden

    @property
    def c_tok(self) -> float:
        return (4 + 2 * self.mlp_ratio) * self.layers * self.hidden**2


def prefill_flops(shape: Shape, T: int) -> float:
    return shape.c_quad * T * T + shape.c_tok * T


def generation_flops(shape: Shape, M: int, T: int) -> float:
    return shape.c_quad * (M * T + M * (M - 1) / 2) + shape.c_tok * M


def step_flops(shape: Shape, k: int, T: int) -> float:
    return 2.0 * (shape.c_quad * k * T + (2 + 2 * shape.mlp_ratio) * shape.layers * k * shape.hidden**2)


def span_pairs(start: int, k: int) -> int:
    """Query-key pairs of a span at positions start..start+k-1 against keys 0..start+i (its causal prefix)."""
    if start < 0 or k < 0:
        raise ValueError("span start and length must be >= 0")
    return k * start + k * (k + 1) // 2


def span_step_flops(shape: Shape, start: int, k: int) -> float:
    """One qTTT step (forward + backward) on the real span [start, start+k): App. C's G_partial with the
    span's own causal prefix instead of the whole context."""
    return 2.0 * (
        shape.c_quad * span_pairs(start, k) + (2 + 2 * shape.mlp_ratio) * shape.layers * k * shape.hidden**2
    )


def discarded_kv_flops(shape: Shape, k: int) -> float:
    """The span's K/V projections that transformers computes and the frozen cache discards (forward only)."""
    kv = shape.kv_dim if shape.kv_dim is not None else shape.hidden
    return 2.0 * shape.layers * k * shape.hidden * kv


def thinking_equivalent_exact(shape: Shape, steps: int, span_len: int, T: int) -> int:
    """Thinking tokens M with F_gen(M; T) = steps·G_partial(span_len; T), solved exactly (App. C)."""
    budget = steps * step_flops(shape, span_len, T)
    # C_quad/2 · M² + (C_quad·(T − 1/2) + C_tok) · M − budget = 0
    a = shape.c_quad / 2
    b = shape.c_quad * (T - 0.5) + shape.c_tok
    return int(math.floor((-b + math.sqrt(b * b + 4 * a * budget)) / (2 * a)))


@dataclass
class Account:
    """FLOPs of one request (App. C units): prefill, adaptation steps, decoding.

    `steps` charges each step its real span (`span_step_flops`); `steps_discarded_kv` is the forward cost
    of the span K/V projections the implementation computes and throws away (not in App. C)."""

    context_len: int
    prefill: float
    steps: float
    decode: float
    n_steps: int
    span_len: int
    decode_tokens: int
    steps_discarded_kv: float = 0.0
    span_basis: str = "actual"

    @property
    def total(self) -> float:
        return self.prefill + self.steps + self.steps_discarded_kv + self.decode

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def account(
    config_or_shape,
    context_len: int,
    steps: int = 0,
    span_len: int = 0,
    decode_tokens: int | Sequence[int] = 0,
    *,
    spans: Sequence[tuple[int, int]] | str = "uniform",
) -> Account:
    """Per-request FLOPs: prefill of the context, the qTTT steps, and the decoded tokens.

    `spans` is the list of (start, length) actually used (`QTTSession.spans`; `steps`/`span_len` are then
    taken from it), or for planning "uniform" (the exact mean under the default sampler: starts uniform
    in [0, T-1-k]) or "full" (App. C's G_partial: every span against the whole context; an upper bound).
    `decode_tokens` is a count, or one count per generation (each decoded after the T-token context)."""
    shape = config_or_shape if isinstance(config_or_shape, Shape) else Shape.from_config(config_or_shape)
    T = int(context_len)
    if T < 0:
        raise ValueError("context_len must be >= 0")
    if isinstance(spans, str):
        if steps < 0 or span_len < 0:
            raise ValueError("steps and span_len must be >= 0")
        if steps == 0:
            step_cost = 0.0
        elif spans == "full":
            step_cost = steps * step_flops(shape, span_len, T)
        elif spans == "uniform":
            hi = max(0, (T - 1) - span_len)  # starts 0..n_cached-k with n_cached = T-1
            # span_step_flops is affine in start, so the mean over uniform starts is its value at hi/2
            mean_pairs = span_len * hi / 2 + span_len * (span_len + 1) / 2
            step_cost = (
                steps
                * 2.0
                * (
                    shape.c_quad * mean_pairs
                    + (2 + 2 * shape.mlp_ratio) * shape.layers * span_len * shape.hidden**2
                )
            )
        else:
            raise ValueError(f"spans must be a list of (start, length), 'uniform' or 'full', got {spans!r}")
        kv_waste = steps * discarded_kv_flops(shape, span_len)
        basis = spans
    else:
        spans = [(int(t), int(k)) for t, k in spans]
        for t, k in spans:
            if t < 0 or k < 1 or t + k > max(T - 1, 0):
                raise ValueError(f"span ({t}, {k}) is not inside the {T - 1} cached context tokens")
        steps = len(spans)
        span_len = spans[0][1] if spans else 0
        step_cost = float(sum(span_step_flops(shape, t, k) for t, k in spans))
        kv_waste = float(sum(discarded_kv_flops(shape, k) for _, k in spans))
        basis = "actual"
    gens = [int(decode_tokens)] if isinstance(decode_tokens, int) else [int(m) for m in decode_tokens]
    if any(m < 0 for m in gens):
        raise ValueError("decode_tokens must be >= 0")
    return Account(
        context_len=T,
        prefill=prefill_flops(shape, T),
        steps=step_cost,
        decode=float(sum(generation_flops(shape, m, T) for m in gens)),
        n_steps=steps,
        span_len=span_len,
        decode_tokens=sum(gens),
        steps_discarded_kv=kv_waste,
        span_basis=basis,
    )
