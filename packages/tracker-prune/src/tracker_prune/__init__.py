"""Structured pruning of CNN and transformer object trackers, physically slimmed (arXiv 2211.13769)."""

from .pruner import Pruner, check_budget
from .slim import set_masks, slim, slim_param_count

__all__ = ["Pruner", "check_budget", "set_masks", "slim", "slim_param_count"]
__version__ = "0.1.0"
