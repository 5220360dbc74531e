"""Span samplers: where each qTTT step's k-token span starts (Algorithm 1 line 3).

The prefill caches positions ``0 ... n_cached-1`` (all prompt tokens but the last). A span of length k
starting at t feeds ``x[t : t+k]`` (all cached positions) and predicts ``x[t+1 : t+k+1]`` (targets stay
inside the prompt, DESIGN.md pitfall 13), so ``0 <= t <= n_cached - k``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Sampler = Callable[[int, int, torch.Generator], int]


def effective_span_len(n_cached: int, span_len: int) -> int:
    """The span length actually used: `span_len`, shortened to the cached prefix when that is shorter."""
    return max(1, min(span_len, n_cached))


def uniform(n_cached: int, span_len: int, gen: torch.Generator) -> int:
    """Paper default: start uniform over every admissible position of the whole prompt."""
    hi = n_cached - span_len
    return int(torch.randint(0, hi + 1, (1,), generator=gen).item())


def context_only(question_len: int) -> Sampler:
    """Spans whose targets never enter the last `question_len` prompt tokens (the question/template)."""

    def sample(n_cached: int, span_len: int, gen: torch.Generator) -> int:
        hi = n_cached - question_len - span_len
        if hi < 0:
            return uniform(n_cached, span_len, gen)
        return int(torch.randint(0, hi + 1, (1,), generator=gen).item())

    sample.__name__ = f"context_only({question_len})"
    return sample


def resolve(sampler, question_len: int = 0) -> Sampler:
    """A sampler function from a config value ("uniform" | "context_only" | callable)."""
    if callable(sampler):
        return sampler
    if sampler == "uniform":
        return uniform
    if sampler == "context_only":
        return context_only(question_len)
    raise ValueError(f"unknown span sampler {sampler!r}")


def checked_start(sampler: Sampler, n_cached: int, span_len: int, gen: torch.Generator) -> int:
    """Call `sampler` and verify the start keeps the span (and its targets) inside the prompt."""
    t = sampler(n_cached, span_len, gen)
    if not isinstance(t, int) or not 0 <= t <= n_cached - span_len:
        raise ValueError(
            f"span sampler returned start {t!r}; it must be an int in [0, {n_cached - span_len}] "
            f"for span_len={span_len} and {n_cached} cached tokens"
        )
    return t
