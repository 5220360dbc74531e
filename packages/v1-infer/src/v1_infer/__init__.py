"""V1: pairwise self-verification tournaments (V1-Infer) and PairRL training (arXiv 2603.04304).

Core (numpy only): `SwissTournament` (ask/tell), `TournamentConfig`, `WinRateStats`, the baselines and
the round-batched drivers (`V1Infer.rank_many`). Judges, backends and graders live in subpackages.
"""

from .aggregation import WinRateStats, bradley_terry
from .baselines import (
    METHODS,
    BradleyTerry,
    Knockout,
    MajorityVote,
    PointwiseBestOfN,
    RandomPairing,
    RandomPick,
    RoundRobin,
    make_selector,
)
from .config import TournamentConfig
from .driver import V1Infer, arun_selectors, run_selectors
from .errors import BackendError, BackendUnavailable, ProblemFailed
from .judges import (
    LLMPairwiseJudge,
    LLMPointwiseJudge,
    OracleJudge,
    SimulatedPairwiseJudge,
    SimulatedPointwiseJudge,
    simulate_problems,
)
from .selector import PairwiseSelector, Selector
from .tournament import SwissTournament
from .types import (
    Candidate,
    Comparison,
    PairOutcome,
    PairQuery,
    PairRequest,
    PointOutcome,
    PointQuery,
    PointRequest,
    RankingResult,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ProblemFailed",
    "METHODS",
    "BradleyTerry",
    "Candidate",
    "Comparison",
    "Knockout",
    "LLMPairwiseJudge",
    "LLMPointwiseJudge",
    "MajorityVote",
    "OracleJudge",
    "PairOutcome",
    "PairQuery",
    "PairRequest",
    "PairwiseSelector",
    "PointOutcome",
    "PointQuery",
    "PointRequest",
    "PointwiseBestOfN",
    "RandomPairing",
    "RandomPick",
    "RankingResult",
    "RoundRobin",
    "Selector",
    "SimulatedPairwiseJudge",
    "SimulatedPointwiseJudge",
    "SwissTournament",
    "TournamentConfig",
    "V1Infer",
    "WinRateStats",
    "arun_selectors",
    "bradley_terry",
    "make_selector",
    "run_selectors",
    "simulate_problems",
]
