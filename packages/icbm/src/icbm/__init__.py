"""Interactive concept bottleneck models: budget-aware concept querying (CooP, AAAI 2023).

Chauhan et al., "Interactive Concept Bottleneck Models", AAAI 2023, reimplemented in PyTorch
following the design notes (shared/papers/icbm.md).
"""

from . import data, experiments, policies
from .candidates import build_candidates, candidate_label_logits
from .dialogue import InteractiveDialogue, Query
from .evaluate import InterventionCurve, evaluate_interventions
from .groups import ConceptGroups
from .model import (
    ConceptBottleneckModel,
    ConceptOutput,
    label_probs,
    linear_cbm,
    predicted_class,
    timm_encoder,
)
from .policies import (
    CooP,
    ExpectedInformationGain,
    Influence,
    Interactive,
    OracleGreedy,
    Policy,
    Random,
    StaticGreedy,
    StaticOrder,
    Uncertainty,
)
from .state import InteractionState
from .training import fit, predict_concept_logits
from .tune import TuneResult, tune_coop

__version__ = "0.1.0"

__all__ = [
    "ConceptBottleneckModel",
    "ConceptGroups",
    "ConceptOutput",
    "CooP",
    "ExpectedInformationGain",
    "Influence",
    "InteractionState",
    "Interactive",
    "InteractiveDialogue",
    "InterventionCurve",
    "OracleGreedy",
    "Policy",
    "Query",
    "Random",
    "StaticGreedy",
    "StaticOrder",
    "TuneResult",
    "Uncertainty",
    "build_candidates",
    "candidate_label_logits",
    "data",
    "evaluate_interventions",
    "experiments",
    "fit",
    "label_probs",
    "linear_cbm",
    "policies",
    "predict_concept_logits",
    "predicted_class",
    "timm_encoder",
    "tune_coop",
]
