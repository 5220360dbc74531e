"""Interactive concept bottleneck models: budget-aware concept querying (CooP, AAAI 2023).

Chauhan et al., "Interactive Concept Bottleneck Models", AAAI 2023, reimplemented in PyTorch; the
algorithm as implemented and every deviation are in DESIGN.md. Everything loads lazily on first
attribute access (`icbm.linear_cbm`, `icbm.data.OccludedConceptsTask`, ...), so `import icbm` and
`icbm --help` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY_ATTRS = {
    "build_candidates": "candidates",
    "candidate_label_logits": "candidates",
    "InteractiveDialogue": "dialogue",
    "Query": "dialogue",
    "InterventionCurve": "evaluate",
    "evaluate_interventions": "evaluate",
    "ConceptGroups": "groups",
    "ConceptBottleneckModel": "model",
    "ConceptOutput": "model",
    "label_probs": "model",
    "linear_cbm": "model",
    "predicted_class": "model",
    "timm_encoder": "model",
    "CooP": "policies",
    "ExpectedInformationGain": "policies",
    "Influence": "policies",
    "Interactive": "policies",
    "OracleGreedy": "policies",
    "Policy": "policies",
    "Random": "policies",
    "StaticGreedy": "policies",
    "StaticOrder": "policies",
    "Uncertainty": "policies",
    "InteractionState": "state",
    "fit": "training",
    "predict_concept_logits": "training",
    "TuneResult": "tune",
    "tune_coop": "tune",
}
_LAZY_SUBMODULES = (
    "bench",
    "candidates",
    "checkpoint",
    "cli",
    "data",
    "dialogue",
    "evaluate",
    "experiments",
    "groups",
    "model",
    "policies",
    "state",
    "training",
    "tune",
)

if TYPE_CHECKING:  # for type checkers and IDEs only; at run time everything loads lazily
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


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY_ATTRS[name]}"), name)
        globals()[name] = value
        return value
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRS) | set(_LAZY_SUBMODULES))


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
