"""Evaluation harness over `datasets`-formatted long-context tasks (local files only)."""

from .harness import EvalResult, evaluate, summarize
from .loaders import SCHEMAS, format_prompt, load_local

__all__ = ["SCHEMAS", "load_local", "format_prompt", "evaluate", "summarize", "EvalResult"]
