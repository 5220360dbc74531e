"""Round-synchronous drivers: run many selection state machines with one judge call per round.

Round r of *every* unfinished problem is gathered into a single ``judge_pairs`` / ``judge_points``
batch, so one engine call (one batched `generate`, or one burst of concurrent HTTP requests) serves
the whole round (DESIGN.md §5.3). A failing judge batch never loses a problem: every request of that batch
gets an outcome with ``error`` set, which the methods count as a *backend error* (never as a parse
failure, never scored): under ``on_backend_error="fail"`` the problem is marked failed
(``RankingResult.failed``), under "skip" the pair stays unjudged. After ``abort_after`` consecutive failed
calls with no success in between the run stops with `BackendUnavailable` (the server is gone); every
problem that finished before is handed to ``on_done`` as it finishes, so callers can persist it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from .baselines import make_selector
from .config import TournamentConfig
from .errors import BackendUnavailable
from .judges.base import PairwiseJudge, PointwiseJudge
from .selector import Selector
from .types import Candidate, PairOutcome, PairQuery, PairRequest, PointOutcome, PointQuery, RankingResult


def _as_candidates(cands: Sequence[Candidate | str]) -> list[Candidate]:
    out = []
    for c in cands:
        if isinstance(c, Candidate):
            out.append(c)
        elif isinstance(c, str):
            out.append(Candidate(text=c))
        else:
            raise TypeError(f"candidates must be Candidate or str, got {type(c).__name__}")
    return out


def _gather(selectors, problems, cands, active, on_done=None):
    pair_q, pair_ix, point_q, point_ix, reqs = [], [], [], [], {}
    for p in sorted(active):
        r = selectors[p].propose()
        if not r:
            active.discard(p)
            if on_done is not None:
                on_done(p, selectors[p].result())
            continue
        reqs[p] = r
        for k, q in enumerate(r):
            if isinstance(q, PairRequest):
                pair_q.append(PairQuery(problems[p], cands[p][q.a], cands[p][q.b]))
                pair_ix.append((p, k))
            else:
                point_q.append(PointQuery(problems[p], cands[p][q.i]))
                point_ix.append((p, k))
    return reqs, pair_q, pair_ix, point_q, point_ix


def _failed(kind, n, err):
    msg = f"judge batch failed: {type(err).__name__}: {err}"
    if kind == "pair":
        return [PairOutcome(None, None, parsed=False, error=msg) for _ in range(n)]
    return [PointOutcome(None, parsed=False, error=msg) for _ in range(n)]


def _scatter(selectors, reqs, pair_ix, pair_out, point_ix, point_out):
    outs: dict[int, list[Any]] = {p: [None] * len(r) for p, r in reqs.items()}
    for (p, k), o in zip(pair_ix, pair_out):
        outs[p][k] = o
    for (p, k), o in zip(point_ix, point_out):
        outs[p][k] = o
    for p, r in reqs.items():
        selectors[p].observe(r, outs[p])


class _AbortCounter:
    """Consecutive failed calls (error set) across rounds; a call that returned text resets it."""

    def __init__(self, abort_after: int):
        self.abort_after, self.run, self.last = int(abort_after or 0), 0, ""

    def feed(self, outcomes) -> None:
        for o in outcomes:
            if o.error is not None:
                self.run += 1
                self.last = str(o.error)
            else:
                self.run = 0
        if self.abort_after and self.run >= self.abort_after:
            raise BackendUnavailable(
                f"stopped after {self.run} consecutive failed judge calls (server down?); last error: "
                f"{self.last[:300]}"
            )


def _check(judge, queries, outcomes, kind):
    if len(outcomes) != len(queries):
        raise RuntimeError(
            f"{type(judge).__name__} returned {len(outcomes)} outcomes for {len(queries)} {kind} queries"
        )


def run_selectors(
    selectors: Sequence[Selector],
    problems: Sequence[str],
    candidates: Sequence[Sequence[Candidate]],
    pair_judge: PairwiseJudge | None = None,
    point_judge: PointwiseJudge | None = None,
    progress: bool = False,
    *,
    on_done=None,
    abort_after: int = 0,
) -> list[RankingResult]:
    """Drive ``selectors[p]`` (one per problem) to completion, batching each round across problems.

    ``on_done(p, result)`` is called as soon as problem ``p`` finishes; ``abort_after`` > 0 raises
    `BackendUnavailable` after that many consecutive failed judge calls."""
    if not (len(selectors) == len(problems) == len(candidates)):
        raise ValueError("selectors, problems and candidates must have the same length")
    active = set(range(len(selectors)))
    abort = _AbortCounter(abort_after)
    bar = tqdm(desc="rounds", disable=not progress, unit="round")
    while active:
        reqs, pair_q, pair_ix, point_q, point_ix = _gather(selectors, problems, candidates, active, on_done)
        if not reqs:
            break
        pair_out, point_out = [], []
        if pair_q:
            if pair_judge is None:
                raise ValueError("a pairwise method needs a pairwise judge")
            try:
                pair_out = pair_judge.judge_pairs(pair_q)
                _check(pair_judge, pair_q, pair_out, "pair")
            except Exception as e:  # every problem still completes and reports the error
                pair_out = _failed("pair", len(pair_q), e)
        if point_q:
            if point_judge is None:
                raise ValueError("a pointwise method needs a pointwise judge")
            try:
                point_out = point_judge.judge_points(point_q)
                _check(point_judge, point_q, point_out, "point")
            except Exception as e:
                point_out = _failed("point", len(point_q), e)
        _scatter(selectors, reqs, pair_ix, pair_out, point_ix, point_out)
        abort.feed(list(pair_out) + list(point_out))
        bar.update(1)
    bar.close()
    return [s.result() for s in selectors]


async def arun_selectors(
    selectors, problems, candidates, pair_judge=None, point_judge=None, *, on_done=None, abort_after=0
) -> list[RankingResult]:
    """Async version: awaits ``ajudge_pairs`` / ``ajudge_points`` when the judge has them."""
    if not (len(selectors) == len(problems) == len(candidates)):
        raise ValueError("selectors, problems and candidates must have the same length")
    active = set(range(len(selectors)))
    abort = _AbortCounter(abort_after)

    async def call(judge, name, queries, kind):
        try:
            fn = getattr(judge, "a" + name, None)
            out = await fn(queries) if fn else await asyncio.to_thread(getattr(judge, name), queries)
            _check(judge, queries, out, kind)
            return out
        except Exception as e:
            return _failed(kind, len(queries), e)

    while active:
        reqs, pair_q, pair_ix, point_q, point_ix = _gather(selectors, problems, candidates, active, on_done)
        if not reqs:
            break
        if pair_q and pair_judge is None:
            raise ValueError("a pairwise method needs a pairwise judge")
        if point_q and point_judge is None:
            raise ValueError("a pointwise method needs a pointwise judge")
        pair_out = await call(pair_judge, "judge_pairs", pair_q, "pair") if pair_q else []
        point_out = await call(point_judge, "judge_points", point_q, "point") if point_q else []
        _scatter(selectors, reqs, pair_ix, pair_out, point_ix, point_out)
        abort.feed(list(pair_out) + list(point_out))
    return [s.result() for s in selectors]


class V1Infer:
    """High-level ranker: pick the best of N candidates with a pairwise judge (or any baseline).

    ``method`` is one of `baselines.METHODS` ("v1" by default); ``method_kwargs`` go to
    `make_selector` (``k`` for knockout, ``repeats`` for pointwise, ``answer_key`` for majority vote).
    Problem p uses seed ``config.seed + p`` so a batch is reproducible and problems differ.
    A problem whose judge calls failed comes back with ``failed`` set (its ``best_index`` raises
    `ProblemFailed`); ``config.abort_after`` consecutive failed calls stop the run (`BackendUnavailable`).
    """

    def __init__(
        self,
        judge: PairwiseJudge | None = None,
        config: TournamentConfig | None = None,
        *,
        point_judge: PointwiseJudge | None = None,
        method: str = "v1",
        **method_kwargs,
    ):
        self.judge, self.point_judge = judge, point_judge
        self.config = config or TournamentConfig()
        self.method, self.method_kwargs = method, method_kwargs

    def _selectors(self, candidate_lists):
        return [
            make_selector(self.method, c, self.config, seed=self.config.seed + p, **self.method_kwargs)
            for p, c in enumerate(candidate_lists)
        ]

    def rank(self, problem: str, candidates: Sequence[Candidate | str]) -> RankingResult:
        return self.rank_many([problem], [candidates])[0]

    def rank_many(
        self,
        problems: Sequence[str],
        candidate_lists: Sequence[Sequence[Candidate | str]],
        progress: bool = False,
    ) -> list[RankingResult]:
        cands = [_as_candidates(c) for c in candidate_lists]
        if len(problems) != len(cands):
            raise ValueError(f"{len(problems)} problems but {len(cands)} candidate lists")
        return run_selectors(
            self._selectors(cands),
            list(problems),
            cands,
            self.judge,
            self.point_judge,
            progress,
            abort_after=self.config.abort_after,
        )

    async def arank_many(self, problems, candidate_lists) -> list[RankingResult]:
        cands = [_as_candidates(c) for c in candidate_lists]
        if len(problems) != len(cands):
            raise ValueError(f"{len(problems)} problems but {len(cands)} candidate lists")
        return await arun_selectors(
            self._selectors(cands),
            list(problems),
            cands,
            self.judge,
            self.point_judge,
            abort_after=self.config.abort_after,
        )
