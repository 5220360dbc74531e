"""Strict parsing of judge outputs and extraction helpers (DESIGN.md §1.4, §6.7).

Rules: only the text after the last ``</think>`` / ``</thinking>`` is parsed (an unclosed thinking block
= truncated output = parse failure); the *last* occurrence of each tag wins (earlier ones are usually
the model quoting the format inside its reasoning); only integers are accepted, then clamped to
[1, 10]; anything else is a parse failure reported with ``ok=False`` (never silently a tie here: the
tie fallback is the tournament's ``on_parse_error`` policy).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_THINK_CLOSE = re.compile(r"</think(?:ing)?>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.IGNORECASE)
_INT = r"\s*\**\s*([+-]?\d+)\s*\**\s*"
_TAG_A = re.compile(r"<rating_A>" + _INT + r"</rating_A>")
_TAG_B = re.compile(r"<rating_B>" + _INT + r"</rating_B>")
_TAG = re.compile(r"<rating>" + _INT + r"</rating>")
_CODE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[^\n]*\n(.*?)```", re.DOTALL)


class ParsedPair(NamedTuple):
    rating_a: int | None
    rating_b: int | None
    ok: bool
    reason: str = ""


class ParsedPoint(NamedTuple):
    rating: int | None
    ok: bool
    reason: str = ""


def strip_thinking(text: str, strict: bool = True) -> str:
    """The part after the last closing think tag. With ``strict``, an opened but unclosed thinking block
    returns "" (the output was truncated mid-reasoning); without, the whole text is returned then."""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        return text[closes[-1].end() :]
    if _THINK_OPEN.search(text):
        return "" if strict else text
    return text


MAX_RATING_DIGITS = 4  # "10" needs 2; anything past 4 digits is not a rating (and int() of a 5,000-digit
# string raises in Python >= 3.11, which must fail one call, never the whole batch)


def _rating(text: str) -> int | None:
    """The integer of a matched tag, or None when it has too many digits to be a rating."""
    digits = text.lstrip("+-")
    if len(digits) > MAX_RATING_DIGITS:
        return None
    return clamp_rating(int(text))


def clamp_rating(r: int) -> int:
    """Clamp to the 1..10 scale (0 -> 1, 11 -> 10), as the code's `_sanitize_pairwise_outcome`."""
    return int(min(max(r, 1), 10))


def parse_pairwise(text: str) -> ParsedPair:
    """Ratings for slot A and B from a pairwise judge output (see the module rules)."""
    if not isinstance(text, str):
        return ParsedPair(None, None, False, f"output is {type(text).__name__}, not str")
    tail = strip_thinking(text)
    if not tail and _THINK_OPEN.search(text):
        return ParsedPair(None, None, False, "unclosed thinking block (truncated output)")
    a = _TAG_A.findall(tail)
    b = _TAG_B.findall(tail)
    if not a or not b:
        missing = [n for n, v in (("rating_A", a), ("rating_B", b)) if not v]
        return ParsedPair(None, None, False, f"missing integer tag(s): {', '.join(missing)}")
    ra, rb = _rating(a[-1]), _rating(b[-1])
    if ra is None or rb is None:
        return ParsedPair(None, None, False, f"absurd rating (more than {MAX_RATING_DIGITS} digits)")
    return ParsedPair(ra, rb, True)


def parse_pointwise(text: str) -> ParsedPoint:
    """Rating from a pointwise judge output (``<rating>INT</rating>``, last occurrence, clamped)."""
    if not isinstance(text, str):
        return ParsedPoint(None, False, f"output is {type(text).__name__}, not str")
    tail = strip_thinking(text)
    if not tail and _THINK_OPEN.search(text):
        return ParsedPoint(None, False, "unclosed thinking block (truncated output)")
    r = _TAG.findall(tail)
    if not r:
        return ParsedPoint(None, False, "missing integer tag: rating")
    rating = _rating(r[-1])
    if rating is None:
        return ParsedPoint(None, False, f"absurd rating (more than {MAX_RATING_DIGITS} digits)")
    return ParsedPoint(rating, True)


def extract_code(text: str) -> str | None:
    """The last fenced code block after the thinking trace (python preferred if labelled), or None."""
    tail = strip_thinking(text, strict=False)
    blocks = _CODE_BLOCK.findall(tail)
    if not blocks:
        return None
    py = [code for lang, code in blocks if lang.lower() in ("python", "py", "python3")]
    return (py or [code for _, code in blocks])[-1].strip("\n")
