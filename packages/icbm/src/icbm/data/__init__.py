"""Data: in-memory concept datasets, the synthetic occluded-concept task and a CUB concept loader."""

from .cub import CUBConcepts, load_cub
from .dataset import ConceptDataset, collect
from .synthetic import OccludedConceptsTask, categorical_task, make_occluded_concepts

__all__ = [
    "CUBConcepts",
    "ConceptDataset",
    "OccludedConceptsTask",
    "categorical_task",
    "collect",
    "load_cub",
    "make_occluded_concepts",
]
