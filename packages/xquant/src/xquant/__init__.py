"""XQuant / XQuant-CL: cache quantized layer inputs X and rematerialize K/V (arXiv 2508.10395).

Not to be confused with arXiv 2510.11236 (a different method also called "XQuant").
"""

from .cache import XQuantCache
from .config import KIVIConfig, XQuantConfig
from .kivi import KIVICache
from .simulate import simulate_loss

__version__ = "0.1.0"
__all__ = ["XQuantCache", "XQuantConfig", "KIVICache", "KIVIConfig", "simulate_loss", "__version__"]
