"""A small offline world for PairRL: single-digit modular addition with an exact grader.

Solver prompt ``"Q a+b="`` -> one answer digit ((a + b) mod 10). Judge prompts use a compact format a
tiny byte-level model can learn (the paper's XML tags are too long for it):
- pairwise ``"J a+b? A<x> B<y>:"`` -> two digit characters, rating r = digit + 1 in 1..10 for A then B;
- pointwise ``"P a+b? <x>:"`` -> one digit character.
Anything else is a parse failure (rating None).
"""

from __future__ import annotations

import numpy as np


def make_problems(k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in rng.integers(0, 10, size=(k, 2))]


def answer(p: tuple[int, int]) -> str:
    return str((p[0] + p[1]) % 10)


def solver_prompt(p) -> str:
    return f"Q {p[0]}+{p[1]}="


def pair_prompt(p, xa: str, xb: str) -> str:
    return f"J {p[0]}+{p[1]}? A{xa[:1] or '_'} B{xb[:1] or '_'}:"


def point_prompt(p, x: str) -> str:
    return f"P {p[0]}+{p[1]}? {x[:1] or '_'}:"


def parse_digit_rating(ch: str) -> int | None:
    return int(ch) + 1 if len(ch) == 1 and ch.isdigit() else None


def sft_examples(
    k: int, rng: np.random.Generator, solve_rate: float = 0.5, judge_acc: float = 0.7
) -> list[str]:
    """Warm-start texts: solver lines correct with probability ``solve_rate``; judge lines whose ratings
    point the right way with probability ``judge_acc`` (a weak but better-than-chance verifier)."""
    out = []
    for p in make_problems(k, rng):
        ans = answer(p)
        wrong = str((int(ans) + int(rng.integers(1, 10))) % 10)
        out.append(solver_prompt(p) + (ans if rng.random() < solve_rate else wrong))
        xa, xb = (ans, wrong) if rng.random() < 0.5 else (wrong, ans)
        good = rng.random() < judge_acc
        hi, lo = str(int(rng.integers(6, 10))), str(int(rng.integers(0, 4)))
        ra, rb = ((hi, lo) if xa == ans else (lo, hi)) if good else ((lo, hi) if xa == ans else (hi, lo))
        out.append(pair_prompt(p, xa, xb) + ra + rb)
        x = ans if rng.random() < 0.5 else wrong
        out.append(point_prompt(p, x) + ((hi if x == ans else lo) if good else (lo if x == ans else hi)))
    return out
