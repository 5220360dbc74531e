"""`IHAKVCache`: an MHA-sized KV cache for the standalone module (DESIGN.md pitfall 8, option (a)).

It keeps the *original* per-head K/V (H_kv·d per token, not P×) plus their positions; the attention
re-mixes them on the fly every step, so ``get_seq_length()`` counts real tokens, never N·P.
"""

from __future__ import annotations

import torch


class IHAKVCache:
    """Per-layer store of unmixed K ``[B, Hkv, S, d]``, V and key positions ``[B, S]``."""

    def __init__(self) -> None:
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def update(self, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, layer_idx: int = 0):
        """Append this step's K/V/positions and return the full cached tensors for the layer."""
        if layer_idx in self.layers:
            k0, v0, p0 = self.layers[layer_idx]
            k, v, pos = torch.cat([k0, k], 2), torch.cat([v0, v], 2), torch.cat([p0, pos], 1)
        self.layers[layer_idx] = (k, v, pos)
        return k, v, pos

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Cached length in real tokens."""
        return 0 if layer_idx not in self.layers else self.layers[layer_idx][0].shape[2]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for kvp in self.layers.values() for t in kvp[:2])
