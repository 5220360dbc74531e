"""A small offline world for PairRL: single-digit modular addition with an exact grader.

Solver prompt ``"Q a+b="`` -> one answer digit ((a + b) mod ``MOD``, a, b < ``MOD``). ``MOD`` = 5 (25
facts) because a 2-layer byte model learns it from noisy warm-start data in about a minute on one core,
while mod 10 stayed at chance for 600 steps (measured). Judge prompts use a compact format a
tiny byte-level model can learn (the paper's XML tags are too long for it):
- pairwise ``"J A<x> B<y> a+b="`` -> two digit characters, rating r = digit + 1 in 1..10 for A then B;
- pointwise ``"P <x> a+b="`` -> one digit character.
The candidates come before the problem so the judge's last positions are those where the solver computes
the sum; the judge then only has to match it against the candidates (with the problem first, a 2-layer
model's judge stayed a constant slot preference for 1000 SFT steps, measured).
Anything else is a parse failure (rating None).
"""

from __future__ import annotations

import numpy as np

MOD = 5


def make_problems(k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in rng.integers(0, MOD, size=(k, 2))]


def answer(p: tuple[int, int]) -> str:
    return str((p[0] + p[1]) % MOD)


def solver_prompt(p) -> str:
    return f"Q {p[0]}+{p[1]}="


def pair_prompt(p, xa: str, xb: str) -> str:
    return f"J A{xa[:1] or '_'} B{xb[:1] or '_'} {p[0]}+{p[1]}="


def point_prompt(p, x: str) -> str:
    return f"P {x[:1] or '_'} {p[0]}+{p[1]}="


def wrong_answer(p, rng: np.random.Generator) -> str:
    """A uniformly drawn incorrect answer."""
    return str((int(answer(p)) + int(rng.integers(1, MOD))) % MOD)


def parse_digit_rating(ch: str) -> int | None:
    return int(ch) + 1 if len(ch) == 1 and ch in "0123456789" else None  # not isdigit(): "¹" is a digit


def seen_facts(frac: float, seed: int = 0) -> set[tuple[int, int]]:
    """The problems whose solver lines appear in the warm-start data (a fixed random ``frac`` of all)."""
    allp = [(a, b) for a in range(MOD) for b in range(MOD)]
    keep = np.random.default_rng(seed).permutation(len(allp))[: round(frac * len(allp))]
    return {allp[int(i)] for i in keep}


def sft_examples(
    k: int,
    rng: np.random.Generator,
    solve_rate: float = 1.0,
    judge_acc: float = 0.75,
    seen_frac: float = 0.5,
) -> list[tuple[str, str]]:
    """Warm-start (prompt, completion) pairs. Solver lines exist only for a fixed ``seen_frac`` of the
    problems (answer correct with probability ``solve_rate``), so the warm start is a real but imperfect
    solver (right on seen facts, guessing on the others; uniformly noisy labels instead kept a 2-layer model
    at chance for 1000 steps, measured). Judge lines cover all problems and point the right way with
    probability ``judge_acc`` (a weak but better-than-chance verifier). The SFT loss is taken on the
    completion bytes (+ EOS) only."""
    seen = seen_facts(seen_frac)
    out = []
    for p in make_problems(k, rng):
        ans = answer(p)
        wrong = wrong_answer(p, rng)
        if p in seen:
            out.append((solver_prompt(p), ans if rng.random() < solve_rate else wrong))
        xa, xb = (ans, wrong) if rng.random() < 0.5 else (wrong, ans)
        good = rng.random() < judge_acc
        hi, lo = str(int(rng.integers(6, 10))), str(int(rng.integers(0, 4)))
        ra, rb = ((hi, lo) if xa == ans else (lo, hi)) if good else ((lo, hi) if xa == ans else (hi, lo))
        out.append((pair_prompt(p, xa, xb), ra + rb))
        x = ans if rng.random() < 0.5 else wrong
        out.append((point_prompt(p, x), (hi if x == ans else lo) if good else (lo if x == ans else hi)))
    return out


def row_problem(row: dict) -> tuple[int, int]:
    return int(row["a"]), int(row["b"])


def is_correct(row: dict, completion: str) -> bool:
    """Exact grader on a dataset row: the completion's first byte is the answer digit."""
    return completion[:1] == answer(row_problem(row))


def parse_pair(text: str) -> tuple[int | None, int | None]:
    return parse_digit_rating(text[:1]), parse_digit_rating(text[1:2])


def parse_point(text: str) -> int | None:
    return parse_digit_rating(text[:1])


BOS_TEXT = "<bos>"  # the byte tokenizer maps this text to its BOS id: TRL prompts match the SFT format


def dataset(n: int, seed: int = 0):
    """A ``datasets.Dataset`` of ``n`` problems (columns prompt, a, b) for the TRL trainer."""
    from datasets import Dataset

    probs = make_problems(n, np.random.default_rng(seed))
    return Dataset.from_list([{"prompt": BOS_TEXT + solver_prompt(p), "a": p[0], "b": p[1]} for p in probs])


def trl_task():
    """The world as a ``PairRLTask`` for ``PairRLGRPOTrainer`` (no <thinking> format gate)."""
    from .judging import PairRLTask

    return PairRLTask(
        is_correct=is_correct,
        pair_prompt=lambda row, a, b: BOS_TEXT + pair_prompt(row_problem(row), a, b),
        point_prompt=lambda row, x: BOS_TEXT + point_prompt(row_problem(row), x),
        parse_pair=parse_pair,
        parse_point=parse_point,
    )
