"""Interleaved Head Attention: pseudo-heads mixed across heads (arXiv 2602.21371).

Public API: `IHAConfig`, `InterleavedHeadAttention`, `IHAMixing`, `IHAKVCache`, the functional core
`iha_attention`, and the transformers integration `patch_model_with_iha` (in `iha_attn.hf`).
Names are imported lazily, so ``iha-attn --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "IHAConfig": "config",
    "IHAKVCache": "cache",
    "IHAMixing": "mixing",
    "InterleavedHeadAttention": "module",
    "collapse": "functional",
    "hp_heads_shortcut": "functional",
    "iha_attention": "functional",
    "merge_pseudo": "functional",
    "mix_heads": "functional",
    "unmerge_pseudo": "functional",
    "patch_model_with_iha": "hf",
    "iha_param_groups": "hf",
    "from_pretrained": "hf",
}

__all__ = [
    "IHAConfig",
    "IHAKVCache",
    "IHAMixing",
    "InterleavedHeadAttention",
    "collapse",
    "from_pretrained",
    "hp_heads_shortcut",
    "iha_attention",
    "iha_param_groups",
    "merge_pseudo",
    "mix_heads",
    "patch_model_with_iha",
    "unmerge_pseudo",
]

if TYPE_CHECKING:
    from .cache import IHAKVCache
    from .config import IHAConfig
    from .functional import (
        collapse,
        hp_heads_shortcut,
        iha_attention,
        merge_pseudo,
        mix_heads,
        unmerge_pseudo,
    )
    from .hf import from_pretrained, iha_param_groups, patch_model_with_iha
    from .mixing import IHAMixing
    from .module import InterleavedHeadAttention


def __getattr__(name: str) -> Any:  # lazy: torch and transformers are slow to import
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'iha_attn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
