"""MetaDOCK: per-task dynamic kernel selection for MAML / iMAML (arXiv 2206.01690)."""

__version__ = "0.1.0"
