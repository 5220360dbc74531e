"""XQuant / XQuant-CL: cache quantized layer inputs X and rematerialize K/V (arXiv 2508.10395).

Not to be confused with arXiv 2510.11236 (a different method also called "XQuant").
The torch-dependent classes are imported lazily, so the console script's `--help` stays fast.
"""

from importlib import import_module

from .config import KIVIConfig, XQuantConfig

__version__ = "0.1.0"
__all__ = ["XQuantCache", "XQuantConfig", "KIVICache", "KIVIConfig", "simulate_loss", "__version__"]

_LAZY = {"XQuantCache": ".cache", "KIVICache": ".kivi", "simulate_loss": ".simulate"}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
