"""The one interface every selection method implements: an ask/tell state machine.

``propose()`` returns the next round of judge requests (`PairRequest` / `PointRequest`), ``observe()``
takes the judge's outcomes for exactly those requests, and ``result()`` returns the `RankingResult`.
An empty proposal means the method is done. The drivers in `driver.py` batch one round of *many*
problems into a single judge call, so an engine call serves a whole round.

`PairwiseSelector` implements everything pairwise methods share: the verifier-call budget, position
handling (fixed / random swap / both orders with consistency gating), the parse-failure policy, the
weighted win-rate statistics and the audit log. Subclasses only choose logical pairs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Union

import numpy as np

from .aggregation import WinRateStats, bradley_terry
from .config import TournamentConfig
from .types import Comparison, PairOutcome, PairRequest, PointOutcome, PointRequest, RankingResult

Request = Union[PairRequest, PointRequest]
Outcome = Union[PairOutcome, PointOutcome]

TIE_RATING = 5.0  # the code's default for a missing rating (`outcome.get('rating_A', 5)`)


def pair_outcome(o: Outcome) -> PairOutcome:
    """`o` as a `PairOutcome`; a pointwise outcome fed to a pairwise method is a wiring bug (TypeError)."""
    if not isinstance(o, PairOutcome):
        raise TypeError(f"a pairwise method got a {type(o).__name__} (the judge must answer a PairRequest)")
    return o


def point_outcome(o: Outcome) -> PointOutcome:
    """`o` as a `PointOutcome`; a pairwise outcome fed to a pointwise method is a wiring bug (TypeError)."""
    if not isinstance(o, PointOutcome):
        raise TypeError(f"a pointwise method got a {type(o).__name__} (the judge must answer a PointRequest)")
    return o


class Selector(ABC):
    """Ask/tell selection method for one problem with ``n`` candidates."""

    name = "selector"

    def __init__(self, n: int):
        if n < 0:
            raise ValueError(f"number of candidates must be >= 0, got {n}")
        self.n = n
        self.calls = 0
        self.rounds = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.parse_failures = 0
        self.backend_errors = 0
        self.pairs_judged = 0  # logical pairs (or pointwise ratings) that entered the scores
        self.pairs_unjudged = 0  # dropped because of a backend error (on_backend_error="skip")
        self.failed: str | None = None  # set when a backend error failed the problem
        self.errors: list[str] = []
        self.log: list[Comparison] = []

    @abstractmethod
    def propose(self) -> list[Request]:
        """The next round of requests; [] when finished."""

    @abstractmethod
    def observe(self, requests: list[Request], outcomes: list[Outcome]) -> None:
        """Feed back the outcomes of the last proposed round (same order)."""

    @abstractmethod
    def result(self) -> RankingResult:
        """Ranking and audit log (valid at any time, final once ``propose()`` returned [])."""

    def _account(self, requests: list[Request], outcomes: list[Outcome]) -> None:
        if len(requests) != len(outcomes):
            raise ValueError(f"got {len(outcomes)} outcomes for {len(requests)} requests")
        self.calls += len(requests)
        if requests:
            self.rounds += 1
        for o in outcomes:
            self.input_tokens += int(o.input_tokens)
            self.output_tokens += int(o.output_tokens)
            if o.error:
                self.errors.append(o.error)

    def _base_result(self, order: list[int], scores: list[float], **kw) -> RankingResult:
        return RankingResult(
            method=self.name,
            order=order,
            scores=[float(s) for s in scores],
            calls=self.calls,
            rounds=self.rounds,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            parse_failures=self.parse_failures,
            errors=list(self.errors),
            comparisons=list(self.log),
            backend_errors=self.backend_errors,
            pairs_judged=self.pairs_judged,
            pairs_unjudged=self.pairs_unjudged,
            failed=self.failed,
            **kw,
        )

    def _backend_failure(self, what: str, err: str, policy: str) -> None:
        """Record a backend error for one logical pair / rating under ``policy`` ("fail" or "skip")."""
        self.pairs_unjudged += 1
        if policy == "fail" and self.failed is None:
            self.failed = f"backend error on {what}: {err}"


class PairwiseSelector(Selector):
    """Shared machinery of budgeted pairwise methods; subclasses implement `_next_pairs`."""

    name = "pairwise"

    def __init__(
        self, n: int, config: TournamentConfig | None = None, budget: int | None = None, final: str = "mu"
    ):
        super().__init__(n)
        self.config = config or TournamentConfig()
        if final not in ("mu", "bt"):
            raise ValueError(f"final must be 'mu' or 'bt', got {final!r}")
        self.final = final
        self.budget = self.config.budget(n) if budget is None else int(budget)
        if self.budget < 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")
        self.rng = np.random.default_rng(self.config.seed)
        # a separate stream for A/B swaps, so the schedule of a seed does not depend on the position mode
        self.pos_rng = np.random.default_rng([self.config.seed, 1])
        self.stats = WinRateStats(
            n, tau=self.config.tau, weighted=self.config.weighted, sign=self.config.sign
        )
        self._pending: list[tuple[int, int]] = []  # logical pairs of the round in flight
        self._slots: list[list[tuple[int, int]]] = []  # per logical pair: the (A, B) calls made
        self._retry: list[tuple[int, int, int]] = []  # (i, j, attempts so far)
        self._retry_attempts: list[int] = []
        self._finished = False

    # ---- subclass hook -------------------------------------------------------------------------
    @abstractmethod
    def _next_pairs(self, max_pairs: int) -> list[tuple[int, int]]:
        """Logical pairs (i, j) of the next round, i preferred in slot A; at most ``max_pairs``."""

    def _after_round(self, pairs: list[tuple[int, int]], ratings: list[tuple[float, float] | None]) -> None:
        """Called after each observed round with the combined (r_i, r_j) per logical pair (None = dropped)."""

    # ---- budget / positions --------------------------------------------------------------------
    @property
    def calls_per_pair(self) -> int:
        return 2 if self.config.position == "both" else 1

    @property
    def remaining_pairs(self) -> int:
        return max(self.budget - self.calls, 0) // self.calls_per_pair

    def _slot_calls(self, i: int, j: int) -> list[tuple[int, int]]:
        mode = self.config.position
        if mode == "fixed":
            return [(i, j)]
        if mode == "random":
            return [(j, i)] if self.pos_rng.random() < 0.5 else [(i, j)]
        return [(i, j), (j, i)]

    def propose(self) -> list[Request]:
        if self._finished or self.n < 2 or self.failed:
            return []
        if self._retry:
            batch = self._retry[: self.remaining_pairs]
            self._retry = []
            pairs = [(i, j) for i, j, _ in batch]
            attempts = [a for _, _, a in batch]
        else:
            pairs = self._next_pairs(self.remaining_pairs) if self.remaining_pairs > 0 else []
            attempts = [0] * len(pairs)
        if not pairs:
            self._finished = True
            return []
        self._pending = pairs
        self._retry_attempts = attempts
        self._slots = [self._slot_calls(i, j) for i, j in pairs]
        return [PairRequest(a, b) for calls in self._slots for a, b in calls]

    def observe(self, requests: list[Request], outcomes: list[Outcome]) -> None:
        self._account(requests, outcomes)
        k = 0
        combined: list[tuple[float, float] | None] = []
        for (i, j), calls, attempts in zip(self._pending, self._slots, self._retry_attempts):
            per_call: list[tuple[float, float]] = []
            backend: list[str] = []
            for a, b in calls:
                o = pair_outcome(outcomes[k])
                k += 1
                if o.error is not None:  # the call itself failed: a backend error, never a parse failure
                    self.backend_errors += 1
                    backend.append(str(o.error))
                    ok = False
                else:
                    ok = bool(o.parsed and o.rating_a is not None and o.rating_b is not None)
                    if not ok:
                        self.parse_failures += 1
                r_a: float | None = None
                r_b: float | None = None
                if ok and o.rating_a is not None and o.rating_b is not None:
                    r_a, r_b = float(o.rating_a), float(o.rating_b)
                ri, rj = (r_a, r_b) if a == i else (r_b, r_a)
                self.log.append(
                    Comparison(
                        self.rounds - 1,
                        a,
                        b,
                        r_a,
                        r_b,
                        ok,
                        "rating" if ok else ("backend_error" if o.error is not None else ""),
                        o.input_tokens,
                        o.output_tokens,
                        o.error,
                    )
                )
                if ri is not None and rj is not None:  # ok: both ratings parsed
                    per_call.append((ri, rj))
            n_calls = len(calls)
            if len(per_call) == n_calls:  # every order of this pair was judged and parsed
                ri = sum(p[0] for p in per_call) / n_calls
                rj = sum(p[1] for p in per_call) / n_calls
                if n_calls == 2:
                    w1 = (per_call[0][0] > per_call[0][1]) - (per_call[0][0] < per_call[0][1])
                    w2 = (per_call[1][0] > per_call[1][1]) - (per_call[1][0] < per_call[1][1])
                    if w1 != w2:  # the two orders disagree: position-driven verdict -> a tie (weight tau)
                        ri = rj = (ri + rj) / 2
                self.stats.update(i, j, ri, rj)
                self.pairs_judged += 1
                combined.append((ri, rj))
                continue
            # position "both" with one order missing: the gate cannot be checked, so the single verdict
            # is never scored at full weight; the pair is handled like a failed pair below
            for c in self.log[-n_calls:]:
                if c.used == "rating":
                    c.used = "incomplete"
            if backend:  # a backend error: never a tie, never a slot win (on_backend_error policy)
                self._backend_failure(f"pair ({i}, {j})", backend[0], self.config.on_backend_error)
                combined.append(None)
                continue
            # parse failures only: apply the parse-error policy (DESIGN.md §6.7)
            policy = self.config.on_parse_error
            if policy == "retry" and attempts < self.config.max_retries:
                self._retry.append((i, j, attempts + 1))
                mark = "retry"
                combined.append(None)
            elif policy == "skip":
                mark = "skip"
                combined.append(None)
            else:
                self.stats.update(i, j, TIE_RATING, TIE_RATING)
                self.pairs_judged += 1
                mark = "tie"
                combined.append((TIE_RATING, TIE_RATING))
            for c in self.log[-n_calls:]:
                if c.used == "":
                    c.used = mark
        self._after_round(self._pending, combined)
        self._pending, self._slots = [], []

    # ---- result --------------------------------------------------------------------------------
    def order(self) -> list[int]:
        if self.final == "bt":
            s = bradley_terry(self.stats.points)
            return [int(k) for k in np.lexsort((np.arange(self.n), -self.stats.avg_rating, -s))]
        rng = np.random.default_rng(self.config.seed + 7919)
        return self.stats.ranking(self.config.final_tiebreak, rng)

    def result(self) -> RankingResult:
        scores = bradley_terry(self.stats.points) if self.final == "bt" else self.stats.mu
        return self._base_result(
            self.order(),
            list(scores),
            avg_rating=[float(x) for x in self.stats.avg_rating],
            extra={"budget": self.budget, "mu": [float(x) for x in self.stats.mu]},
        )
