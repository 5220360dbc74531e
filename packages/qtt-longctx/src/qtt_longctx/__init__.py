"""qTTT: query-only test-time training on long contexts (arXiv 2512.13898).

``with adapt(model, input_ids, QTTConfig()) as s: s.generate(...)`` prefills the context once, takes N
next-token-prediction steps on random spans that update only the query projections against the frozen
KV cache, decodes from the same cache, and restores the model bit-exactly on exit.

The names below are imported on first use, so ``import qtt_longctx.cli`` (and ``qtt --help``) does not
pay for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "QTTConfig": ".config",
    "QTTSession": ".adapt",
    "adapt": ".adapt",
    "FrozenPrefixCache": ".cache",
    "QueryDelta": ".delta",
    "DecodeResult": ".decoding",
    "decode": ".decoding",
}

__all__ = [
    "QTTConfig",
    "QTTSession",
    "adapt",
    "FrozenPrefixCache",
    "QueryDelta",
    "DecodeResult",
    "decode",
    "flops",
]

if TYPE_CHECKING:
    from . import flops
    from .adapt import QTTSession, adapt
    from .cache import FrozenPrefixCache
    from .config import QTTConfig
    from .decoding import DecodeResult, decode
    from .delta import QueryDelta


def __getattr__(name: str) -> Any:
    if name == "flops":
        return importlib.import_module(".flops", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
