"""Query policies under one interface: `scores(state) -> (B, K)`, `select(state) -> (B,)`."""

from .base import Policy
from .baselines import Random, StaticGreedy, StaticOrder
from .oracle import OracleGreedy
from .scored import CooP, ExpectedInformationGain, Influence, Interactive, Uncertainty, binary_entropy

__all__ = [
    "CooP",
    "ExpectedInformationGain",
    "Influence",
    "Interactive",
    "OracleGreedy",
    "Policy",
    "Random",
    "StaticGreedy",
    "StaticOrder",
    "Uncertainty",
    "binary_entropy",
]
