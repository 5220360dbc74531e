"""Plain data types shared by the tournament, the judges and the backends.

Everything here is engine-agnostic (no torch, no HTTP): a `Candidate` is a text plus free-form
metadata, a judge turns `PairQuery`/`PointQuery` objects into `PairOutcome`/`PointOutcome` objects, and
a selection method returns a `RankingResult` that carries the full audit log of what it asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Candidate:
    """One sampled solution. `meta` holds optional extras (e.g. the final ``answer`` for majority vote,
    or the simulator's latent ``quality`` / ground-truth ``correct``)."""

    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PairRequest:
    """Ask the judge to compare candidate ``a`` (slot A) with candidate ``b`` (slot B)."""

    a: int
    b: int


@dataclass(frozen=True)
class PointRequest:
    """Ask the judge to rate candidate ``i`` alone (pointwise self-verification)."""

    i: int


@dataclass
class PairQuery:
    """What a pairwise judge sees: the problem and two candidates in slot order."""

    problem: str
    a: Candidate
    b: Candidate


@dataclass
class PointQuery:
    """What a pointwise judge sees: the problem and one candidate."""

    problem: str
    candidate: Candidate


@dataclass
class PairOutcome:
    """A pairwise judge's answer. Ratings are already clamped to [1, 10] when ``parsed`` is True.

    ``error`` is set when the call itself failed (backend error, timeout); then ``parsed`` is False.
    """

    rating_a: float | None
    rating_b: float | None
    parsed: bool = True
    raw: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None


@dataclass
class PointOutcome:
    """A pointwise judge's answer (rating in [1, 10] when ``parsed``)."""

    rating: float | None
    parsed: bool = True
    raw: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None


@dataclass
class Comparison:
    """One entry of the audit log: a judge call, who sat in which slot, what came back, and how it was used.

    ``i``/``j`` are candidate indices in slot A/B. ``used`` says how the outcome entered the scores:
    "rating" (parsed), "tie" (parse failure turned into a 5/5 tie), "skip" (dropped), "retry" (re-asked),
    "backend_error" (the call itself failed: never scored), "incomplete" (a parsed call whose pair was not
    scored because its other order failed, position "both").
    """

    round: int
    i: int
    j: int
    rating_i: float | None
    rating_j: float | None
    parsed: bool
    used: str
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None


@dataclass
class RankingResult:
    """The output of any selection method on one problem, with its audit log.

    ``order`` ranks candidate indices best first; ``scores`` is the method's primary score per candidate
    (µ for V1, the mean rating for pointwise, the vote count for majority vote, ...).
    """

    method: str
    order: list[int]
    scores: list[float]
    calls: int = 0
    rounds: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    parse_failures: int = 0
    errors: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    avg_rating: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    backend_errors: int = 0
    pairs_judged: int = 0
    pairs_unjudged: int = 0
    failed: str | None = None

    @property
    def best_index(self) -> int:
        """Index of the selected candidate (the top of ``order``).

        Raises `ProblemFailed` when the problem failed (a backend error under ``on_backend_error="fail"``):
        a failed problem has no winner, whatever ``order`` says."""
        if self.failed:
            from .errors import ProblemFailed

            raise ProblemFailed(f"no selection: {self.failed}")
        if not self.order:
            raise ValueError("empty ranking: there were no candidates")
        return self.order[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the audit log included)."""
        from dataclasses import asdict

        d = asdict(self)
        d["best_index"] = self.order[0] if self.order and not self.failed else None
        return d
