"""`QTTConfig`: every knob of one qTTT request (paper §3, App. D defaults), validated on construction."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

OPTIMIZERS = ("adamw", "sgd")
MODES = ("full", "lora")
SAMPLERS = ("uniform", "context_only")


@dataclass
class QTTConfig:
    """Hyper-parameters of query-only test-time training.

    Defaults follow App. D of the paper: N=32 steps of next-token prediction on k=128-token spans, AdamW with
    decoupled weight decay 0.01 and gradient clipping 1.0, learning rate in the paper's "insensitive" range
    [1e-6, 1e-5]. `mode="full"` trains a zero-initialised fp32 delta on every W_Q (the paper's text);
    `mode="lora"` trains a rank-`lora_rank` adapter on q_proj (what EASE-TTT reports as the official setup).

    `span_sampler` is "uniform" (paper: start uniform over the prompt), "context_only" (never a span whose
    targets reach into the last `question_len` tokens) or a callable ``(n_cached, span_len, generator) -> start``.
    Contexts shorter than `min_context` tokens are answered without adaptation (qTTT can hurt at short T,
    App. E).
    """

    steps: int = 32
    span_len: int = 128
    lr: float = 1e-5
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    mode: str = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    layers: str | Sequence[int] = "all"
    span_sampler: str | Callable[..., int] = "uniform"
    question_len: int = 0
    min_context: int = 0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.steps, int) or not 0 <= self.steps <= 100_000:
            raise ValueError(f"QTTConfig.steps must be an int in [0, 100000], got {self.steps!r}")
        if not isinstance(self.span_len, int) or self.span_len < 1:
            raise ValueError(f"QTTConfig.span_len must be a positive int, got {self.span_len!r}")
        if not isinstance(self.lr, (int, float)) or not 0.0 <= float(self.lr) <= 10.0 or self.lr != self.lr:
            raise ValueError(f"QTTConfig.lr must be a finite number in [0, 10], got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"QTTConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.mode not in MODES:
            raise ValueError(f"QTTConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.weight_decay < 0:
            raise ValueError(f"QTTConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"QTTConfig.grad_clip must be positive or None, got {self.grad_clip!r}")
        if self.mode == "lora" and (not isinstance(self.lora_rank, int) or self.lora_rank < 1):
            raise ValueError(f"QTTConfig.lora_rank must be a positive int, got {self.lora_rank!r}")
        if not callable(self.span_sampler) and self.span_sampler not in SAMPLERS:
            raise ValueError(f"QTTConfig.span_sampler must be one of {SAMPLERS} or a callable")
        if self.layers != "all":
            if isinstance(self.layers, str) or not all(isinstance(i, int) for i in self.layers):
                raise ValueError(
                    f"QTTConfig.layers must be 'all' or a list of layer indices, got {self.layers!r}"
                )
            self.layers = tuple(self.layers)
        if self.min_context < 0 or self.question_len < 0:
            raise ValueError("QTTConfig.min_context and question_len must be >= 0")
        self.lr = float(self.lr)
        self.betas = tuple(self.betas)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (a callable sampler is recorded by name)."""
        d = asdict(self)
        if callable(self.span_sampler):
            d["span_sampler"] = getattr(self.span_sampler, "__name__", "callable")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QTTConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown QTTConfig fields: {sorted(unknown)}")
        return cls(**d)
