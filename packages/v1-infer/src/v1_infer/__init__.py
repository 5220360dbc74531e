"""V1: pairwise self-verification tournaments (V1-Infer) and PairRL training (arXiv 2603.04304).

Core (numpy only): `SwissTournament` (ask/tell), `TournamentConfig`, `WinRateStats`, the baselines and
the round-batched drivers (`V1Infer.rank_many`). Judges, backends and graders live in subpackages.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562): `import v1_infer` and `v1-infer --help` load no numpy.
_LAZY = {
    "WinRateStats": "aggregation",
    "bradley_terry": "aggregation",
    "METHODS": "methods",
    "BradleyTerry": "baselines",
    "Knockout": "baselines",
    "MajorityVote": "baselines",
    "PointwiseBestOfN": "baselines",
    "RandomPairing": "baselines",
    "RandomPick": "baselines",
    "RoundRobin": "baselines",
    "make_selector": "baselines",
    "TournamentConfig": "config",
    "V1Infer": "driver",
    "arun_selectors": "driver",
    "run_selectors": "driver",
    "BackendError": "errors",
    "BackendUnavailable": "errors",
    "ProblemFailed": "errors",
    "LLMPairwiseJudge": "judges",
    "LLMPointwiseJudge": "judges",
    "OracleJudge": "judges",
    "SimulatedPairwiseJudge": "judges",
    "SimulatedPointwiseJudge": "judges",
    "simulate_problems": "judges",
    "PairwiseSelector": "selector",
    "Selector": "selector",
    "SwissTournament": "tournament",
    "Candidate": "types",
    "Comparison": "types",
    "PairOutcome": "types",
    "PairQuery": "types",
    "PairRequest": "types",
    "PointOutcome": "types",
    "PointQuery": "types",
    "PointRequest": "types",
    "RankingResult": "types",
}

if TYPE_CHECKING:
    from .aggregation import WinRateStats, bradley_terry
    from .baselines import (
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
    from .methods import METHODS
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
