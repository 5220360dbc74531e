"""Structured pruning of CNN and transformer object trackers, physically slimmed (arXiv 2211.13769)."""

__version__ = "0.1.0"
