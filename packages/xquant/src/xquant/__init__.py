"""XQuant / XQuant-CL: cache quantized layer inputs X and rematerialize K/V (arXiv 2508.10395)."""

__version__ = "0.1.0"
