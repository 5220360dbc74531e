"""FLOP accounting of qTTT vs thinking tokens (paper App. C, Eq. 3.2) and budget matching.

App. C, for L layers, hidden size d and MLP ratio r (MLP holds 2·r·d² weights per layer):
``C_quad = 2·L·d``, ``C_tok = (4 + 2r)·L·d²``;

* prefill of T tokens: ``F_prefill(T) = C_quad·T² + C_tok·T``
* M thinking tokens after T: ``F_gen(M; T) = C_quad·(M·T + M(M−1)/2) + C_tok·M``
* one qTTT step, span k over a prefix T: ``G_partial(k; T) ≈ 2·(C_quad·k·T + (2 + 2r)·L·k·d²)``
  (forward + backward of the span; no K/V projections since K/V are frozen)

For T ≫ d and k ≪ T the prefill cancels and ``F_gen(M) = N·G_partial`` gives Eq. 3.2: ``M ≈ 2·N·k``.
"""

from __future__ import annotations

import math
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

    @classmethod
    def from_config(cls, config) -> Shape:
        """From a transformers config; a gated (SwiGLU) MLP holds 3·d·ff weights, i.e. r = 1.5·ff/d."""
        d = int(config.hidden_size)
        ff = int(getattr(config, "intermediate_size", 4 * d))
        gated = getattr(config, "hidden_act", "silu") in ("silu", "swish", "gelu_pytorch_tanh")
        r = (3 if gated else 2) * ff / (2 * d)
        return cls(int(config.num_hidden_layers), d, r)

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


def thinking_equivalent_exact(shape: Shape, steps: int, span_len: int, T: int) -> int:
    """Thinking tokens M with F_gen(M; T) = steps·G_partial(span_len; T), solved exactly (App. C)."""
    budget = steps * step_flops(shape, span_len, T)
    # C_quad/2 · M² + (C_quad·(T − 1/2) + C_tok) · M − budget = 0
    a = shape.c_quad / 2
    b = shape.c_quad * (T - 0.5) + shape.c_tok
    return int(math.floor((-b + math.sqrt(b * b + 4 * a * budget)) / (2 * a)))


@dataclass
class Account:
    """FLOPs of one request (App. C units): prefill, adaptation steps, decoding."""

    context_len: int
    prefill: float
    steps: float
    decode: float
    n_steps: int
    span_len: int
    decode_tokens: int

    @property
    def total(self) -> float:
        return self.prefill + self.steps + self.decode

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def account(
    config_or_shape, context_len: int, steps: int = 0, span_len: int = 0, decode_tokens: int = 0
) -> Account:
    """Per-request FLOPs: prefill of the context, `steps` qTTT steps (prefix = T), `decode_tokens` generated."""
    shape = config_or_shape if isinstance(config_or_shape, Shape) else Shape.from_config(config_or_shape)
    T = int(context_len)
    return Account(
        context_len=T,
        prefill=prefill_flops(shape, T),
        steps=steps * step_flops(shape, span_len, T) if steps else 0.0,
        decode=generation_flops(shape, decode_tokens, T),
        n_steps=steps,
        span_len=span_len,
        decode_tokens=decode_tokens,
    )
