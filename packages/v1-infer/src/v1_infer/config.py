"""Configuration of the V1-Infer tournament (paper defaults, App. C.1) and its explicit options."""

from __future__ import annotations

from dataclasses import dataclass

POSITION_MODES = ("fixed", "random", "both")
PARSE_ERROR_MODES = ("tie", "skip", "retry")
BACKEND_ERROR_MODES = ("fail", "skip")
SWISS_KEYS = ("unseen_first", "gap_first")
TIEBREAKS = ("avg_rating", "index", "random")
SIGNS = ("appendix", "main_text")


@dataclass(frozen=True)
class TournamentConfig:
    """Knobs of `SwissTournament` and of the other pairwise methods.

    Paper defaults [PAPER App. C.1, CODE-AUDIT]: ``min_degree`` (d_min) = 2, ``window`` (h) = 8,
    ``tau`` = 0.1, budget B = max(N, int(``budget_multiplier`` x N)) verifier calls.

    Options that the paper leaves unspecified (DESIGN.md §6):

    - ``position``: "fixed" (paper/code: the coverage needer or the higher-ranked Swiss node sits in
      slot A), "random" (swap A/B with probability 1/2 per call), "both" (judge both orders, 2 calls
      per pair, average the ratings; if the two orders disagree on the winner the pair counts as a tie).
    - ``on_parse_error``: "tie" (code behaviour: missing ratings become 5/5, weight tau, budget spent),
      "skip" (budget spent, scores untouched), "retry" (re-ask the pair next round, up to
      ``max_retries`` times, each retry a counted call; then a tie).
    - ``on_backend_error``: what a *backend* error means (connect error, HTTP 4xx/5xx after retries,
      timeout, context overflow; counted apart from parse failures and never scored): "fail" (default:
      the problem is marked failed and has no winner) or "skip" (the pair stays unjudged; the result
      says on how many judged pairs the ranking rests, ``pairs_judged`` / ``pairs_unjudged``).
    - ``abort_after``: the drivers stop the whole run (`BackendUnavailable`) after this many consecutive
      failed judge calls with no success in between (0 = never).
    - ``swiss_key``: "unseen_first" (the code's partner key: unseen, |µ gap|, pair count) or
      "gap_first" (the paper's Alg. 4 key: |µ gap|, seen, index).
    - ``final_tiebreak``: "avg_rating" (code: sort by -µ then -average rating), "index" or "random".
    - ``weighted``: margin weights w = max(|r_i - r_j|/9, tau) (paper) or w = 1 (ablation).
    - ``sign``: "appendix" (v_ij = 1 for a win, correct) or "main_text" (the reversed wording of the
      paper's Eq. 1, kept only to demonstrate the bug; never use it).
    """

    budget_multiplier: float = 2.0
    min_degree: int = 2
    window: int = 8
    tau: float = 0.1
    swiss_key: str = "unseen_first"
    position: str = "fixed"
    on_parse_error: str = "tie"
    on_backend_error: str = "fail"
    abort_after: int = 8
    max_retries: int = 1
    final_tiebreak: str = "avg_rating"
    weighted: bool = True
    sign: str = "appendix"
    enforce_min_budget: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.budget_multiplier <= 0:
            raise ValueError(f"budget_multiplier must be > 0, got {self.budget_multiplier}")
        if self.min_degree < 0:
            raise ValueError(f"min_degree must be >= 0, got {self.min_degree}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 0 <= self.tau <= 1:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.abort_after < 0:
            raise ValueError(f"abort_after must be >= 0, got {self.abort_after}")
        for name, val, allowed in (
            ("position", self.position, POSITION_MODES),
            ("on_backend_error", self.on_backend_error, BACKEND_ERROR_MODES),
            ("on_parse_error", self.on_parse_error, PARSE_ERROR_MODES),
            ("swiss_key", self.swiss_key, SWISS_KEYS),
            ("final_tiebreak", self.final_tiebreak, TIEBREAKS),
            ("sign", self.sign, SIGNS),
        ):
            if val not in allowed:
                raise ValueError(f"{name}={val!r} is not one of {allowed}")

    def budget(self, n: int) -> int:
        """Number of verifier calls for N candidates: max(N, int(mult x N)) as in the code mirror.

        With ``enforce_min_budget=False`` the raw int(mult x N) is used (B < N is allowed, see DESIGN.md §6.11).
        """
        b = int(self.budget_multiplier * n)
        return max(n, b) if self.enforce_min_budget else max(b, 1)
