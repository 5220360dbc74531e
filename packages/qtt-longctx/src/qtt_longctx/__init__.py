"""qTTT: query-only test-time training on long contexts (arXiv 2512.13898).

``with adapt(model, input_ids, QTTConfig()) as s: s.generate(...)`` prefills the context once, takes N
next-token-prediction steps on random spans that update only the query projections against the frozen
KV cache, decodes from the same cache, and restores the model bit-exactly on exit.
"""

from . import flops
from .adapt import QTTSession, adapt
from .cache import FrozenPrefixCache
from .config import QTTConfig
from .decoding import DecodeResult, decode
from .delta import QueryDelta

__version__ = "0.1.0"

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
