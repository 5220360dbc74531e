"""MAST: multi-agent system failure taxonomy and LLM-as-a-judge annotator (arXiv 2503.13657)."""

__version__ = "0.1.0"
