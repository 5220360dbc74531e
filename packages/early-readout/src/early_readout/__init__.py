"""Early readouts that reweight distillation against featural bias (arXiv 2310.18590, "DeDiER").

The public names are imported on first use (PEP 562), so that ``early-readout --help`` does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Batch": "batches",
    "IndexedDataset": "batches",
    "unpack_batch": "batches",
    "EarlyReadoutDistiller": "distill",
    "History": "distill",
    "eval_mode": "distill",
    "distill_loss_per_example": "losses",
    "kd_loss": "losses",
    "normalize_weights": "losses",
    "ReadoutHead": "readout",
    "FeatureTap": "taps",
    "find_module": "taps",
    "affine_exp_weights": "weighting",
    "exp_pow_weights": "weighting",
    "get_weight_fn": "weighting",
    "margin": "weighting",
}

__all__ = [
    "Batch",
    "EarlyReadoutDistiller",
    "FeatureTap",
    "History",
    "IndexedDataset",
    "ReadoutHead",
    "affine_exp_weights",
    "distill_loss_per_example",
    "eval_mode",
    "exp_pow_weights",
    "find_module",
    "get_weight_fn",
    "kd_loss",
    "margin",
    "normalize_weights",
    "unpack_batch",
]

if TYPE_CHECKING:
    from .batches import Batch, IndexedDataset, unpack_batch
    from .distill import EarlyReadoutDistiller, History, eval_mode
    from .losses import distill_loss_per_example, kd_loss, normalize_weights
    from .readout import ReadoutHead
    from .taps import FeatureTap, find_module
    from .weighting import affine_exp_weights, exp_pow_weights, get_weight_fn, margin


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'early_readout' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
