"""V1: pairwise self-verification tournaments (V1-Infer) and PairRL training (arXiv 2603.04304)."""

__version__ = "0.1.0"
