"""The keyword a model's forward takes for its KV cache: `cache=` (what transformers now prefers; the
`past_key_values=` spelling is deprecated towards 6.0) or `past_key_values=` (transformers 5.x before the
rename, and most custom models). Every forward that passes a cache goes through `cache_kwargs`."""

from __future__ import annotations

import inspect
from typing import Any

_SPELLING: dict[type, str] = {}


def cache_keyword(model: Any) -> str:
    """ "cache" when the model's forward accepts `cache=`, else "past_key_values" (memoised per class)."""
    cls = type(model)
    if cls not in _SPELLING:
        try:
            names = set(inspect.signature(model.forward).parameters)
        except (TypeError, ValueError):  # builtins / C extensions: assume the classic spelling
            names = set()
        _SPELLING[cls] = "cache" if "cache" in names else "past_key_values"
    return _SPELLING[cls]


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{cache_keyword(model): cache}``, to splat into a forward call."""
    return {cache_keyword(model): cache}
