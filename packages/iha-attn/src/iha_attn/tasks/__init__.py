"""Synthetic tasks from the paper (App. D) and DESIGN.md §3.2, as seeded generators."""

from .cpm3 import cpm3_batch, cpm3_labels
from .multikey import MultiKeySpec, multikey_batch
from .polyfilter import PolyFilterTask
from .relcomp import relcomp_batch

__all__ = ["MultiKeySpec", "PolyFilterTask", "cpm3_batch", "cpm3_labels", "multikey_batch", "relcomp_batch"]
