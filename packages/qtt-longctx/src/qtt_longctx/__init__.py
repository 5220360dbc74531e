"""qTTT: query-only test-time training on long contexts (arXiv 2512.13898)."""

__version__ = "0.1.0"
