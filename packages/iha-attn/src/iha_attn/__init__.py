"""Interleaved Head Attention: pseudo-heads mixed across heads (arXiv 2602.21371).

Public API: `IHAConfig`, `InterleavedHeadAttention`, `IHAMixing`, `IHAKVCache`, the functional core
`iha_attention`, and the transformers integration `patch_model_with_iha` (in `iha_attn.hf`).
"""

from .cache import IHAKVCache
from .config import IHAConfig
from .functional import collapse, hp_heads_shortcut, iha_attention, merge_pseudo, mix_heads, unmerge_pseudo
from .mixing import IHAMixing
from .module import InterleavedHeadAttention

__version__ = "0.1.0"

__all__ = [
    "IHAConfig",
    "IHAKVCache",
    "IHAMixing",
    "InterleavedHeadAttention",
    "collapse",
    "hp_heads_shortcut",
    "iha_attention",
    "merge_pseudo",
    "mix_heads",
    "unmerge_pseudo",
    "patch_model_with_iha",
    "iha_param_groups",
    "from_pretrained",
]


def __getattr__(name):  # lazy: importing transformers is slow
    if name in ("patch_model_with_iha", "iha_param_groups", "from_pretrained"):
        from . import hf

        return getattr(hf, name)
    raise AttributeError(name)
