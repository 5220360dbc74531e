"""Judge protocols: batched, so a whole tournament round across many problems is one call."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..types import PairOutcome, PairQuery, PointOutcome, PointQuery


@runtime_checkable
class PairwiseJudge(Protocol):
    """Rates two candidates (slot A, slot B) on 1..10; one outcome per query, same order."""

    def judge_pairs(self, queries: list[PairQuery]) -> list[PairOutcome]: ...


@runtime_checkable
class PointwiseJudge(Protocol):
    """Rates one candidate on 1..10; one outcome per query, same order."""

    def judge_points(self, queries: list[PointQuery]) -> list[PointOutcome]: ...
