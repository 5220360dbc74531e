"""Seeded simulated judges and problem generator (DESIGN.md §3.2), for benchmarks and offline tests.

Candidate i of a problem has correctness y_i ~ Bernoulli(p) and latent quality q_i ~ N(y_i, 0.8^2)
(stored in ``Candidate.meta['correct']`` / ``meta['quality']``). One judge call draws a calibration
offset c ~ N(0, calibration^2): a pairwise call shares c between A and B (so it cancels in the
comparison), a pointwise call gets its own c per item ("calibration collapse"). Each item also gets
noise e ~ N(0, noise^2). Rating = clip(round(offset + scale * (q + c + e [+ position_bias in slot A])),
1, 10), with offset 5.5 pairwise and 8.0 pointwise (optimistic, saturating at 10).
"""

from __future__ import annotations

import numpy as np

from ..types import Candidate, PairOutcome, PairQuery, PointOutcome, PointQuery

PROMPT_OVERHEAD_TOKENS = 250  # rough size of the paper's judge template (App. F) in tokens


def _tokens(c: Candidate) -> int:
    return int(c.meta.get("n_tokens", max(len(c.text) // 4, 1)))


def _quality(c: Candidate) -> float:
    if "quality" not in c.meta:
        raise KeyError("simulated judges need Candidate.meta['quality'] (see simulate_problems)")
    return float(c.meta["quality"])


class _SimBase:
    def __init__(
        self,
        *,
        noise: float,
        calibration: float,
        scale: float,
        offset: float,
        parse_failure_rate: float,
        output_tokens: int,
        seed: int,
    ):
        if not 0 <= parse_failure_rate <= 1:
            raise ValueError(f"parse_failure_rate must be in [0, 1], got {parse_failure_rate}")
        if noise < 0 or calibration < 0:
            raise ValueError("noise and calibration must be >= 0")
        self.noise, self.calibration, self.scale, self.offset = noise, calibration, scale, offset
        self.parse_failure_rate, self.output_tokens = parse_failure_rate, output_tokens
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def _rate(self, latent: float) -> float:
        return float(min(max(round(self.offset + self.scale * latent), 1), 10))


class SimulatedPairwiseJudge(_SimBase):
    """Pairwise judge with shared per-call calibration, item noise, slot-A ``position_bias`` (latent units)
    and a ``parse_failure_rate`` (the output then has no rating tags)."""

    def __init__(
        self,
        *,
        noise: float = 0.6,
        calibration: float = 1.0,
        scale: float = 2.0,
        offset: float = 5.5,
        position_bias: float = 0.0,
        parse_failure_rate: float = 0.0,
        output_tokens: int = 400,
        seed: int = 0,
    ):
        super().__init__(
            noise=noise,
            calibration=calibration,
            scale=scale,
            offset=offset,
            parse_failure_rate=parse_failure_rate,
            output_tokens=output_tokens,
            seed=seed,
        )
        self.position_bias = position_bias

    def judge_pairs(self, queries: list[PairQuery]) -> list[PairOutcome]:
        out = []
        m = len(queries)
        # one vectorised draw per batch: (calibration, noise A, noise B, parse-failure uniform) per call
        cal = self.rng.normal(0, self.calibration, size=m).tolist()
        noise = self.rng.normal(0, self.noise, size=(m, 2)).tolist()
        fail = self.rng.random(m).tolist()
        for k, q in enumerate(queries):
            self.calls += 1
            c, (ea, eb) = cal[k], noise[k]
            ra = self._rate(_quality(q.a) + c + ea + self.position_bias)
            rb = self._rate(_quality(q.b) + c + eb)
            tin = PROMPT_OVERHEAD_TOKENS + len(q.problem) // 4 + _tokens(q.a) + _tokens(q.b)
            if fail[k] < self.parse_failure_rate:
                out.append(
                    PairOutcome(
                        None,
                        None,
                        parsed=False,
                        raw="(simulated: no rating tags)",
                        input_tokens=tin,
                        output_tokens=self.output_tokens,
                    )
                )
            else:
                raw = f"<rating_A>{int(ra)}</rating_A>\n<rating_B>{int(rb)}</rating_B>"
                out.append(PairOutcome(ra, rb, True, raw, tin, self.output_tokens))
        return out


class SimulatedPointwiseJudge(_SimBase):
    """Pointwise judge: each call draws its own calibration offset (nothing cancels), offset 8.0."""

    def __init__(
        self,
        *,
        noise: float = 0.6,
        calibration: float = 1.0,
        scale: float = 2.0,
        offset: float = 8.0,
        parse_failure_rate: float = 0.0,
        output_tokens: int = 300,
        seed: int = 0,
    ):
        super().__init__(
            noise=noise,
            calibration=calibration,
            scale=scale,
            offset=offset,
            parse_failure_rate=parse_failure_rate,
            output_tokens=output_tokens,
            seed=seed,
        )

    def judge_points(self, queries: list[PointQuery]) -> list[PointOutcome]:
        out = []
        m = len(queries)
        cal = self.rng.normal(0, self.calibration, size=m).tolist()
        noise = self.rng.normal(0, self.noise, size=m).tolist()
        fail = self.rng.random(m).tolist()
        for k, q in enumerate(queries):
            self.calls += 1
            latent = _quality(q.candidate) + cal[k] + noise[k]
            tin = PROMPT_OVERHEAD_TOKENS + len(q.problem) // 4 + _tokens(q.candidate)
            if fail[k] < self.parse_failure_rate:
                out.append(PointOutcome(None, False, "(simulated: no rating tag)", tin, self.output_tokens))
            else:
                r = self._rate(latent)
                out.append(PointOutcome(r, True, f"<rating>{int(r)}</rating>", tin, self.output_tokens))
        return out


class OracleJudge:
    """Deterministic judge: ``correct_rating`` for a correct candidate, ``incorrect_rating`` otherwise,
    in either slot (acceptance test: V1 must then always pick a correct candidate when B >= N)."""

    def __init__(self, correct_rating: float = 8, incorrect_rating: float = 6):
        self.hi, self.lo = float(correct_rating), float(incorrect_rating)
        self.calls = 0

    def _r(self, c: Candidate) -> float:
        return self.hi if c.meta["correct"] else self.lo

    def judge_pairs(self, queries: list[PairQuery]) -> list[PairOutcome]:
        self.calls += len(queries)
        return [PairOutcome(self._r(q.a), self._r(q.b)) for q in queries]

    def judge_points(self, queries: list[PointQuery]) -> list[PointOutcome]:
        self.calls += len(queries)
        return [PointOutcome(self._r(q.candidate)) for q in queries]


def simulate_problems(
    num_problems: int,
    n: int = 16,
    p: float | str = "beta",
    *,
    seed: int = 0,
    quality_sigma: float = 0.8,
    beta: tuple[float, float] = (0.8, 0.8),
    mixed_only: bool = True,
    wrong_answers: str = "clustered",
    n_wrong_clusters: int = 2,
) -> list[tuple[str, list[Candidate]]]:
    """Synthetic problems: ``p`` is a fixed success probability or "beta" (p ~ Beta(0.8, 0.8) per problem).

    With ``mixed_only`` only problems with at least one correct and one incorrect candidate are kept
    (selection accuracy is only informative there). Each candidate's meta has ``correct``, ``quality``,
    ``answer`` (the correct answer "A*", wrong answers from ``n_wrong_clusters`` values when
    ``wrong_answers='clustered'`` or all distinct when 'dispersed') and ``n_tokens`` (a length proxy).
    """
    if n < 1 or num_problems < 0:
        raise ValueError(f"need n >= 1 and num_problems >= 0, got n={n}, num_problems={num_problems}")
    if wrong_answers not in ("clustered", "dispersed"):
        raise ValueError(f"wrong_answers must be 'clustered' or 'dispersed', got {wrong_answers!r}")
    if mixed_only and n < 2:
        raise ValueError("mixed problems need n >= 2")
    if isinstance(p, str) and p != "beta":
        raise ValueError(f"p must be a probability or 'beta', got {p!r}")
    if not isinstance(p, str) and not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if mixed_only and not isinstance(p, str) and p in (0.0, 1.0):
        raise ValueError("p in {0, 1} never produces mixed problems")
    rng = np.random.default_rng(seed)
    out: list[tuple[str, list[Candidate]]] = []
    while len(out) < num_problems:
        pk = rng.beta(*beta) if p == "beta" else float(p)
        y = rng.random(n) < pk
        if mixed_only and (y.all() or not y.any()):
            continue
        q = rng.normal(y.astype(float), quality_sigma)
        toks = rng.lognormal(np.log(600), 0.5, size=n).astype(int)
        pid = len(out)
        cands = []
        for k in range(n):
            if y[k]:
                ans = "A*"
            elif wrong_answers == "clustered":
                ans = f"W{int(rng.integers(n_wrong_clusters))}"
            else:
                ans = f"W{k}"
            cands.append(
                Candidate(
                    text=f"[problem {pid}] candidate {k}",
                    meta={
                        "correct": bool(y[k]),
                        "quality": float(q[k]),
                        "answer": ans,
                        "n_tokens": int(toks[k]),
                    },
                )
            )
        out.append((f"simulated problem {pid} (p={pk:.2f})", cands))
    return out
