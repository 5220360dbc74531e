"""`SwissTournament`: V1-Infer's budgeted pairwise tournament as an ask/tell state machine.

Schedule (DESIGN.md §1.3): round 0 = a random perfect matching; phase 1 = min-degree coverage until every
node has d_min distinct opponents (or cannot get more); phase 2 = Swiss refinement within a window of h
ranks, until the budget B of verifier calls is spent. One proposed round = disjoint pairs that can all
be judged in parallel.
"""

from __future__ import annotations

from .config import TournamentConfig
from .scheduling import coverage_pairs, random_matching, swiss_pairs
from .selector import PairwiseSelector


class SwissTournament(PairwiseSelector):
    """V1-Infer for one problem with ``n`` candidates (paper Alg. 1 + App. D).

    >>> t = SwissTournament(n=4, config=TournamentConfig(budget_multiplier=1.0))
    >>> while (reqs := t.propose()):
    ...     t.observe(reqs, judge(reqs))        # doctest: +SKIP
    >>> t.result().best_index                   # doctest: +SKIP
    """

    name = "v1"

    def __init__(
        self, n: int, config: TournamentConfig | None = None, budget: int | None = None, final: str = "mu"
    ):
        super().__init__(n, config, budget, final)
        self.phase = "round0"
        self.satisfied: set[int] = set()

    def _next_pairs(self, max_pairs: int) -> list[tuple[int, int]]:
        cfg = self.config
        while True:
            if self.phase == "round0":
                self.phase = "coverage"
                pairs = random_matching(self.n, self.rng, max_pairs)
                if pairs:
                    return pairs
            elif self.phase == "coverage":
                pairs = coverage_pairs(self.stats, cfg.min_degree, self.satisfied, max_pairs)
                if pairs:
                    return pairs
                self.phase = "swiss"
            elif self.phase == "swiss":
                if self.n <= 2:
                    self.phase = "done"
                    continue
                # Swiss ranks by (-µ, -avg rating) whatever the final tie-break option is (Alg. 4 / code)
                order = self.stats.ranking("avg_rating")
                pairs = swiss_pairs(self.stats, cfg.window, cfg.swiss_key, max_pairs, order)
                if pairs:
                    return pairs
                self.phase = "done"
            else:
                return []
