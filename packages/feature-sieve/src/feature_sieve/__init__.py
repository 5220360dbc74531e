"""Feature sieve: suppress easy spurious features in early layers (arXiv 2301.13293)."""

__version__ = "0.1.0"
