"""Baselines behind the same ask/tell `Selector` interface (compared at equal verifier calls).

- `RandomPick` (Pass@1): a uniformly random candidate, zero calls.
- `MajorityVote` (math): the most frequent final answer, zero calls.
- `PointwiseBestOfN`: rate each candidate alone (``repeats`` times to match a pairwise budget), pick the
  best mean rating; ties by index (the code's stable sort, DESIGN.md §6.8) or at random.
- `RandomPairing`: rounds of random perfect matchings until the budget, margin-weighted µ (the paper's
  scheduling ablation).
- `Knockout`: single-elimination bracket, ``k`` votes (calls) per match, (N-1)k calls, ceil(log2 N) rounds.
- `RoundRobin`: all N(N-1)/2 pairs in one round.
- `BradleyTerry`: random pairs at the budget, ranked by a Bradley-Terry MLE instead of µ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .config import TournamentConfig
from .methods import METHODS  # re-exported here: the one list of method names
from .selector import TIE_RATING, Outcome, PairwiseSelector, Request, Selector, point_outcome
from .types import Candidate, Comparison, PointRequest, RankingResult


class RandomPick(Selector):
    """Pass@1: pick a random candidate (the rest of the order is random too)."""

    name = "random_pick"

    def __init__(self, n: int, seed: int = 0):
        super().__init__(n)
        self.perm = [int(k) for k in np.random.default_rng(seed).permutation(n)]

    def propose(self):
        return []

    def observe(self, requests, outcomes):
        self._account(requests, outcomes)

    def result(self) -> RankingResult:
        scores = [0.0] * self.n
        for rank, k in enumerate(self.perm):
            scores[k] = float(self.n - rank)
        return self._base_result(list(self.perm), scores)


class MajorityVote(Selector):
    """Self-consistency: group candidates by their final answer and pick the largest group.

    ``answers`` are the extracted answers (None = no answer, never wins a vote); ``key`` maps an answer
    to its equivalence class (e.g. `graders.math.canonical_answer`). Within the winning group the first
    candidate is picked; group ties are broken by first occurrence or at random (``tiebreak``).
    """

    name = "majority"

    def __init__(
        self,
        answers: Sequence[Any],
        key: Callable[[Any], Any] | None = None,
        tiebreak: str = "index",
        seed: int = 0,
    ):
        super().__init__(len(answers))
        if tiebreak not in ("index", "random"):
            raise ValueError(f"tiebreak must be 'index' or 'random', got {tiebreak!r}")
        key = key or (lambda a: a)
        self.keys = [None if a is None else key(a) for a in answers]
        self.tiebreak, self.seed = tiebreak, seed

    def propose(self):
        return []

    def observe(self, requests, outcomes):
        self._account(requests, outcomes)

    def result(self) -> RankingResult:
        counts: dict[Any, int] = {}
        for k in self.keys:
            if k is not None:
                counts[k] = counts.get(k, 0) + 1
        votes = [counts.get(k, 0) if k is not None else 0 for k in self.keys]
        second = (
            np.random.default_rng(self.seed).random(self.n) if self.tiebreak == "random" else np.zeros(self.n)
        )
        # group tie-break must act per group: use the group's first index (or a random group score)
        first: dict = {}
        for idx, k in enumerate(self.keys):
            first.setdefault(k, idx)
        group_second = [second[first[k]] if self.tiebreak == "random" else first[k] for k in self.keys]
        order = [int(i) for i in np.lexsort((np.arange(self.n), group_second, -np.asarray(votes)))]
        return self._base_result(order, [float(v) for v in votes], extra={"groups": len(counts)})


class PointwiseBestOfN(Selector):
    """Pointwise self-verification: ``repeats`` independent ratings per candidate in one round.

    Parse failures: "tie" -> rating 5 (as the code), "skip" -> that rating is dropped.
    """

    name = "pointwise"

    def __init__(
        self,
        n: int,
        repeats: int = 1,
        tiebreak: str = "index",
        on_parse_error: str = "tie",
        seed: int = 0,
        on_backend_error: str = "fail",
    ):
        super().__init__(n)
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        if tiebreak not in ("index", "random"):
            raise ValueError(f"tiebreak must be 'index' or 'random', got {tiebreak!r}")
        if on_parse_error not in ("tie", "skip"):
            raise ValueError(f"pointwise on_parse_error must be 'tie' or 'skip', got {on_parse_error!r}")
        if on_backend_error not in ("fail", "skip"):
            raise ValueError(f"on_backend_error must be 'fail' or 'skip', got {on_backend_error!r}")
        self.repeats, self.tiebreak, self.on_parse_error, self.seed = repeats, tiebreak, on_parse_error, seed
        self.on_backend_error = on_backend_error
        self.sums = np.zeros(n)
        self.cnts = np.zeros(n)
        self._done = False

    def propose(self):
        if self._done or self.n == 0:
            return []
        self._done = True
        return [PointRequest(i) for _ in range(self.repeats) for i in range(self.n)]

    def observe(self, requests: list[Request], outcomes: list[Outcome]) -> None:
        self._account(requests, outcomes)
        for req, raw in zip(requests, outcomes):
            o = point_outcome(raw)
            if not isinstance(req, PointRequest):
                raise TypeError(f"pointwise got a {type(req).__name__} request back")
            if o.error is not None:  # backend error: never a rating, never a tie
                self.backend_errors += 1
                self._backend_failure(f"candidate {req.i}", str(o.error), self.on_backend_error)
                ok, r, used = False, None, "backend_error"
            else:
                ok = bool(o.parsed and o.rating is not None)
                if not ok:
                    self.parse_failures += 1
                r = (
                    float(o.rating)
                    if ok and o.rating is not None
                    else (TIE_RATING if self.on_parse_error == "tie" else None)
                )
                used = "rating" if ok else self.on_parse_error
            self.log.append(
                Comparison(
                    self.rounds - 1,
                    req.i,
                    -1,
                    o.rating if ok else None,
                    None,
                    ok,
                    used,
                    o.input_tokens,
                    o.output_tokens,
                    o.error,
                )
            )
            if r is not None:
                self.sums[req.i] += r
                self.cnts[req.i] += 1
                self.pairs_judged += 1

    def result(self) -> RankingResult:
        scores = np.where(self.cnts > 0, self.sums / np.maximum(self.cnts, 1), 0.0)
        second = (
            np.random.default_rng(self.seed).permutation(self.n)
            if self.tiebreak == "random"
            else np.arange(self.n)
        )
        order = [int(i) for i in np.lexsort((second, -scores))]
        return self._base_result(order, list(scores))


class RandomPairing(PairwiseSelector):
    """The paper's random-pairing ablation: B independent, uniformly random pairs (i != j), all in one
    round (DESIGN.md §5.2: "random pairing ... need[s] 1" round), aggregated with the same weighted µ.

    ``matchings=True`` instead draws rounds of random perfect matchings until the budget (a stronger,
    non-adaptive design: every candidate gets the same number of comparisons).
    """

    name = "random_pairing"

    def __init__(self, n, config=None, budget=None, final="mu", matchings: bool = False):
        super().__init__(n, config, budget, final)
        self.matchings = matchings
        self._emitted = False

    def _next_pairs(self, max_pairs):
        if self.matchings:
            idx = self.rng.permutation(self.n)
            return [(int(idx[k]), int(idx[k + 1])) for k in range(0, self.n - 1, 2)][:max_pairs]
        if self._emitted:
            return []
        self._emitted = True
        pairs = []
        for _ in range(max_pairs):
            i, j = self.rng.choice(self.n, size=2, replace=False)
            pairs.append((int(i), int(j)))
        return pairs


class BradleyTerry(RandomPairing):
    """Random pairs at the budget, ranked by a Bradley-Terry MLE (MM algorithm) of the win/tie outcomes."""

    name = "bradley_terry"

    def __init__(self, n, config=None, budget=None, matchings: bool = False):
        super().__init__(n, config, budget, final="bt", matchings=matchings)


class RoundRobin(PairwiseSelector):
    """All N(N-1)/2 pairs once, in one round; the budget is the number of pairs (x2 for position='both')."""

    name = "round_robin"

    def __init__(self, n, config=None):
        cfg = config or TournamentConfig()
        pairs = n * (n - 1) // 2
        super().__init__(n, cfg, budget=pairs * (2 if cfg.position == "both" else 1))
        self._emitted = False

    def _next_pairs(self, max_pairs):
        if self._emitted:
            return []
        self._emitted = True
        return [(i, j) for i in range(self.n) for j in range(i + 1, self.n)][:max_pairs]


class Knockout(PairwiseSelector):
    """Single-elimination bracket (Chen et al. 2411.19477): each match gets ``k`` judge calls (votes).

    Match winner: more points (win 1, tie 1/2 per vote); then the higher summed rating; then the
    slot-A (earlier-seeded) player. Odd players get a bye. The final order is: champion, then
    players by the round they were eliminated in (later = better), then by µ.
    """

    name = "knockout"

    def __init__(self, n, k: int = 1, config=None):
        if k < 1:
            raise ValueError(f"votes per match k must be >= 1, got {k}")
        cfg = config or TournamentConfig()
        super().__init__(n, cfg, budget=max(n - 1, 0) * k * (2 if cfg.position == "both" else 1))
        self.k = k
        self.alive = [int(i) for i in self.rng.permutation(n)]
        self.out_round = np.full(n, -1)
        self.stage = 0

    def _next_pairs(self, max_pairs):
        if len(self.alive) < 2:
            return []
        matches = [(self.alive[m], self.alive[m + 1]) for m in range(0, len(self.alive) - 1, 2)]
        return [p for p in matches for _ in range(self.k)][:max_pairs]

    def _after_round(self, pairs, ratings):
        pts: dict[tuple[int, int], list[float]] = {}
        for (i, j), r in zip(pairs, ratings):
            acc = pts.setdefault((i, j), [0.0, 0.0, 0.0, 0.0])
            if r is None:
                continue
            ri, rj = r
            acc[0] += 1.0 if ri > rj else (0.5 if ri == rj else 0.0)
            acc[1] += 1.0 if rj > ri else (0.5 if ri == rj else 0.0)
            acc[2] += ri
            acc[3] += rj
        judged = {p for p, r in zip(pairs, ratings) if r is not None}
        errored = {
            frozenset((c.i, c.j))
            for c in self.log
            if c.round == self.rounds - 1 and c.used == "backend_error"
        }
        nxt = []
        for m in range(0, len(self.alive) - 1, 2):
            i, j = self.alive[m], self.alive[m + 1]
            if (i, j) not in judged and frozenset((i, j)) in errored:
                # no vote of this match was judged because the backend failed: never a slot-A win
                self.failed = self.failed or f"knockout match ({i}, {j}) has no judged vote (backend errors)"
            a = pts.get((i, j), [0.0, 0.0, 0.0, 0.0])
            win_i = (a[0], a[2]) >= (a[1], a[3])
            winner, loser = (i, j) if win_i else (j, i)
            self.out_round[loser] = self.stage
            nxt.append(winner)
        if len(self.alive) % 2 == 1:
            nxt.append(self.alive[-1])  # bye
        self.alive = nxt
        self.stage += 1

    def order(self, bt_scores=None):
        out = self.out_round.copy()
        for i in self.alive:
            out[i] = self.stage + 1
        return [int(k) for k in np.lexsort((np.arange(self.n), -self.stats.mu, -out))]

    def result(self):
        res = super().result()
        res.scores = [float(x) for x in self.out_round]
        return res


def make_selector(
    method: str,
    candidates: Sequence[Candidate],
    config: TournamentConfig | None = None,
    *,
    k: int = 1,
    repeats: int = 1,
    answer_key: Callable | None = None,
    tiebreak: str = "index",
    seed: int | None = None,
) -> Selector:
    """Build any method by name for one problem (``seed`` overrides ``config.seed``)."""
    from dataclasses import replace

    from .tournament import SwissTournament

    cfg = config or TournamentConfig()
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    n = len(candidates)
    if method == "v1":
        return SwissTournament(n, cfg)
    if method == "random_pairing":
        return RandomPairing(n, cfg)
    if method == "bradley_terry":
        return BradleyTerry(n, cfg)
    if method == "knockout":
        return Knockout(n, k=k, config=cfg)
    if method == "round_robin":
        return RoundRobin(n, cfg)
    if method == "pointwise":
        return PointwiseBestOfN(
            n,
            repeats=repeats,
            tiebreak=tiebreak,
            on_parse_error="skip" if cfg.on_parse_error == "skip" else "tie",
            seed=cfg.seed,
            on_backend_error=cfg.on_backend_error,
        )
    if method == "majority":
        answers = [c.meta.get("answer") for c in candidates]
        return MajorityVote(answers, key=answer_key, tiebreak=tiebreak, seed=cfg.seed)
    if method == "random_pick":
        return RandomPick(n, seed=cfg.seed)
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
