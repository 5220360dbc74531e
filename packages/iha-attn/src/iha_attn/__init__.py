"""Interleaved Head Attention: pseudo-heads mixed across heads (arXiv 2602.21371)."""

__version__ = "0.1.0"
