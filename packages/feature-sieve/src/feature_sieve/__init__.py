"""Feature sieve (SiFer, Tiwari & Shenoy, ICML 2023, arXiv 2301.13293): suppress easy spurious features
in early layers by making an auxiliary head at a lower layer unable to read them.

>>> from feature_sieve import FeatureSieve
>>> sieve = FeatureSieve(model, sieve_layer="layer1", num_classes=2, example_input=(3, 224, 224))
>>> for step, (x, y) in enumerate(loader): sieve.training_step(x, y, step)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names resolve on first use (PEP 562) so that `feature-sieve --help` does not import torch.
_EXPORTS = {
    "AuxEntropyTracker": "diagnostics",
    "AuxHead": "heads",
    "ERM": "methods",
    "FeatureSieve": "sieve",
    "GroupDRO": "methods",
    "GroupMetrics": "metrics",
    "History": "train",
    "SmallCNN": "models",
    "build_model": "models",
    "error_set": "jtt",
    "evaluate": "train",
    "execution_order": "hooks",
    "fit": "train",
    "forget_loss_uniform": "losses",
    "forget_loss_wrong_sign": "losses",
    "forward_to": "hooks",
    "layer_features": "diagnostics",
    "lower_parameters": "hooks",
    "predict": "train",
    "prediction_entropy": "losses",
    "resolve_layer": "hooks",
    "run_jtt": "jtt",
    "sgd": "methods",
    "shortcut_probe": "diagnostics",
    "worst_group_accuracy": "metrics",
}

if TYPE_CHECKING:  # static checkers see the real objects
    from .diagnostics import AuxEntropyTracker, layer_features, shortcut_probe
    from .heads import AuxHead
    from .hooks import execution_order, forward_to, lower_parameters, resolve_layer
    from .jtt import error_set, run_jtt
    from .losses import forget_loss_uniform, forget_loss_wrong_sign, prediction_entropy
    from .methods import ERM, GroupDRO, sgd
    from .metrics import GroupMetrics, worst_group_accuracy
    from .models import SmallCNN, build_model
    from .sieve import FeatureSieve
    from .train import History, evaluate, fit, predict


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'feature_sieve' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "ERM",
    "AuxEntropyTracker",
    "AuxHead",
    "FeatureSieve",
    "GroupDRO",
    "GroupMetrics",
    "History",
    "SmallCNN",
    "build_model",
    "error_set",
    "evaluate",
    "execution_order",
    "fit",
    "forget_loss_uniform",
    "forget_loss_wrong_sign",
    "forward_to",
    "layer_features",
    "lower_parameters",
    "predict",
    "prediction_entropy",
    "resolve_layer",
    "run_jtt",
    "sgd",
    "shortcut_probe",
    "worst_group_accuracy",
]
