"""Token budgeting of the trace: estimate, then error / head+tail truncate / chunk -- never silently.

Tokenizers are offline-safe: the default estimator is ceil(chars / 4) (DESIGN.md §6.7: ``tiktoken`` would
download BPE files); pass any ``count(text) -> int`` (e.g. a local HF tokenizer) for exact counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

ON_OVERFLOW = ("error", "truncate", "chunk")


def char_estimate(text: str, chars_per_token: float = 4.0) -> int:
    """Rough token count: ceil(len / chars_per_token)."""
    return math.ceil(len(text) / chars_per_token)


def hf_counter(tokenizer) -> Callable[[str], int]:
    """Exact counts from a local HF tokenizer (no download)."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


class TraceTooLongError(ValueError):
    """The trace does not fit the judge's input budget and ``on_overflow='error'``."""


@dataclass
class BudgetResult:
    parts: list[str]
    trace_tokens: int
    budget_tokens: int
    truncated: bool = False
    omitted_tokens: int = 0
    action: str = "fits"


def _cut(text: str, n_tokens: int, count: Callable[[str], int], from_end: bool) -> str:
    """The longest prefix (or suffix) of `text` with at most n_tokens tokens (binary search on chars)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        piece = text[len(text) - mid :] if from_end else text[:mid]
        if count(piece) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[len(text) - lo :] if from_end else text[:lo]


def fit_trace(
    text: str,
    budget_tokens: int,
    on_overflow: str = "error",
    count: Callable[[str], int] = char_estimate,
    head_fraction: float = 0.5,
    overlap_tokens: int = 0,
) -> BudgetResult:
    """Fit `text` into `budget_tokens` per call.

    * ``error``: raise `TraceTooLongError`;
    * ``truncate``: keep head and tail (specification modes live at the start, termination and
      verification at the end, DESIGN.md §5.3) around a visible ``[... N tokens omitted by mast ...]`` marker;
    * ``chunk``: overlapping windows, each judged separately and OR-aggregated (inflates prevalence by
      1-(1-p)^k for a per-call false-positive rate p, DESIGN.md §3.4 E3).
    """
    if on_overflow not in ON_OVERFLOW:
        raise ValueError(f"on_overflow must be one of {ON_OVERFLOW}, got {on_overflow!r}")
    if budget_tokens <= 0:
        raise TraceTooLongError(
            f"no room for the trace: the static prompt alone exceeds the input budget "
            f"(trace budget {budget_tokens} tokens)"
        )
    n = count(text)
    if n <= budget_tokens:
        return BudgetResult([text], n, budget_tokens)
    if on_overflow == "error":
        raise TraceTooLongError(
            f"trace has ~{n} tokens but only {budget_tokens} fit the judge input budget; "
            "use on_overflow='truncate' or 'chunk', or raise max_input_tokens"
        )
    if on_overflow == "truncate":
        marker_room = 16
        keep = max(budget_tokens - marker_room, 2)
        head = _cut(text, int(keep * head_fraction), count, from_end=False)
        tail = _cut(text[len(head) :], keep - count(head), count, from_end=True)
        omitted = n - count(head) - count(tail)
        marker = f"\n[... {omitted} tokens omitted by mast (truncated) ...]\n"
        return BudgetResult([head + marker + tail], n, budget_tokens, True, omitted, "truncate")
    # chunk
    if overlap_tokens >= budget_tokens:
        raise ValueError("overlap_tokens must be smaller than the per-chunk budget")
    parts, start = [], 0
    while start < len(text):
        piece = _cut(text[start:], budget_tokens, count, from_end=False)
        if not piece:
            raise TraceTooLongError("cannot make progress chunking: a single character exceeds the budget")
        parts.append(piece)
        if start + len(piece) >= len(text):
            break
        back = len(_cut(piece, overlap_tokens, count, from_end=True)) if overlap_tokens else 0
        start += max(len(piece) - back, 1)
    return BudgetResult(parts, n, budget_tokens, False, 0, "chunk")
