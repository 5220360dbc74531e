"""Early readouts that reweight distillation against featural bias (arXiv 2310.18590, "DeDiER")."""

from .batches import Batch, IndexedDataset, unpack_batch
from .distill import EarlyReadoutDistiller, History, eval_mode
from .losses import distill_loss_per_example, kd_loss, normalize_weights
from .readout import ReadoutHead
from .taps import FeatureTap, find_module
from .weighting import affine_exp_weights, exp_pow_weights, get_weight_fn, margin

__version__ = "0.1.0"

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
