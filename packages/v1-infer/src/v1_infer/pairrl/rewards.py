"""PairRL / PointRL rewards (paper §5, DESIGN.md §1.5 and §6.14).

Verifier reward per pair: r = ½ Σ_{i∈{A,B}} 1(|v_i − y_i| ≤ thr) · (1 − |v_i − y_i|), with v the
normalised rating and y ∈ {0, 1} the ground-truth correctness. The normalisation is unspecified in
the paper; both readings are offered:
- "minus1_over9": v = (r − 1)/9 -> ratings 9-10 pay for a correct solution, 1-2 for an incorrect one.
- "over10":       v = r/10      -> ratings 8-10 and 1-2 pay.
"""

from __future__ import annotations

import re

NORMS = ("minus1_over9", "over10")
_EPS = 1e-9  # so 1 - 0.8 = 0.19999999999999996 counts as within the 0.2 threshold


def normalize_rating(r: float, norm: str = "minus1_over9") -> float:
    """Map a 1..10 rating to [0, 1]."""
    if norm == "minus1_over9":
        return (float(r) - 1.0) / 9.0
    if norm == "over10":
        return float(r) / 10.0
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def item_reward(v: float, y: float, threshold: float | None = 0.2) -> float:
    """1(|v − y| ≤ threshold) · (1 − |v − y|); ``threshold=None`` drops the sparsity gate."""
    d = abs(float(v) - float(y))
    if threshold is not None and d > threshold + _EPS:
        return 0.0
    return 1.0 - d


def pair_verifier_reward(
    rating_a: float | None,
    rating_b: float | None,
    y_a: bool,
    y_b: bool,
    *,
    threshold: float | None = 0.2,
    norm: str = "minus1_over9",
) -> float:
    """PairRL verifier reward for one judged pair; an unparsed output (None rating) earns 0."""
    if rating_a is None or rating_b is None:
        return 0.0
    va, vb = normalize_rating(rating_a, norm), normalize_rating(rating_b, norm)
    return 0.5 * (item_reward(va, float(y_a), threshold) + item_reward(vb, float(y_b), threshold))


def point_verifier_reward(
    rating: float | None, y: bool, *, threshold: float | None = 0.2, norm: str = "minus1_over9"
) -> float:
    """PointRL baseline reward: the same per-item term for a single rated solution."""
    if rating is None:
        return 0.0
    return item_reward(normalize_rating(rating, norm), float(y), threshold)


_THINK = re.compile(r"<thinking>.*?</thinking>", re.DOTALL)


def format_ok(text: str) -> bool:
    """The generation format of App. E: a closed <thinking>...</thinking> block followed by an answer."""
    m = _THINK.search(text)
    return m is not None and bool(text[m.end() :].strip())


def gen_reward(correct: bool, text: str | None = None, *, require_format: bool = True) -> float:
    """Generator reward: 1 only if the answer is correct (all tests pass) and, when required, the
    <thinking> format is respected; else 0."""
    if require_format and (text is None or not format_ok(text)):
        return 0.0
    return 1.0 if correct else 0.0
