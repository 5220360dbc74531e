"""Pairwise and pointwise judges: simulated (for benchmarks and tests) and LLM-backed."""

from .base import PairwiseJudge, PointwiseJudge
from .llm import LLMPairwiseJudge, LLMPointwiseJudge
from .simulated import OracleJudge, SimulatedPairwiseJudge, SimulatedPointwiseJudge, simulate_problems

__all__ = [
    "LLMPairwiseJudge",
    "LLMPointwiseJudge",
    "OracleJudge",
    "PairwiseJudge",
    "PointwiseJudge",
    "SimulatedPairwiseJudge",
    "SimulatedPointwiseJudge",
    "simulate_problems",
]
