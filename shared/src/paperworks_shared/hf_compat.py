"""The cache argument under every transformers 5.x: `past_key_values=` until 5.23, `cache=` from 5.24.

transformers 5.24 renamed the forward/generate argument ``past_key_values`` to ``cache`` (the old name
warns, and goes away in 5.40 for ``forward`` and 6.0 for ``generate``), and model outputs carry
``.cache``. Code that hands a cache to a model asks this module for the keyword instead of hard-coding
either name, so it runs without warnings on the transformers it finds. Stdlib only."""

from __future__ import annotations

import inspect
from typing import Any


def cache_kwarg(model: Any) -> str:
    """``"cache"`` when the model's forward takes that argument (transformers >= 5.24), else ``"past_key_values"``."""
    fwd = getattr(model, "forward", model)
    try:
        params = inspect.signature(fwd).parameters
    except (TypeError, ValueError):  # a builtin or C callable: assume the long-standing name
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``model(input_ids=..., **cache_kwargs(model, cache))`` / ``model.generate(..., **cache_kwargs(model, cache))``."""
    return {cache_kwarg(model): cache}


def output_cache(outputs: Any) -> Any:
    """The cache a forward returned, from ``outputs.cache`` (>= 5.24) or ``outputs.past_key_values``."""
    for name in ("cache", "past_key_values"):
        try:
            value = outputs[name] if isinstance(outputs, dict) else getattr(outputs, name)
        except (KeyError, AttributeError):
            continue
        if value is not None:
            return value
    return None
