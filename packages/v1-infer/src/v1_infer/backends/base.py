"""The `TextGenerator` protocol every backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings (paper App. C.1: T=1.0 math / 0.6 code, top-p 0.95). ``temperature=0`` = greedy."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass
class Generation:
    """One completion. ``error`` is set (and ``text`` empty) when this request failed for good."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None


@runtime_checkable
class TextGenerator(Protocol):
    """``generate(prompts, params)`` returns, per prompt, a list of ``params.n`` `Generation` objects.

    Implementations must never drop a prompt: a failed request yields Generations with ``error`` set.
    """

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]: ...
