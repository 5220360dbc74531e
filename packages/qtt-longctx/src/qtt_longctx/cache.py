"""`FrozenPrefixCache`: a read-only transformers `Cache` over the prefill K/V (paper §3, Algorithm 1 line 4).

qTTT computes K/V for the whole context once and then runs N span forwards that *read* it. A span
``x[t : t+k]`` must see the cached keys of positions ``< t + k`` (its own positions included: App. C counts
no K/V projections for span tokens, so span queries attend to the stale, original-weight K/V of every
position) at absolute positions ``t ... t+k-1`` with a bottom-right causal mask.

transformers derives all three from the cache: ``position_ids = arange(k) + cache.get_seq_length()``,
the mask's query offset from ``get_query_offset`` and the key length from ``get_mask_sizes``. So a window
layer that reports ``start`` as its length, ignores the K/V handed to `update` (the frozen semantics: no
append, no mutation) and returns a *view* ``keys[..., :start+k, :]`` gives exactly those semantics, with
no copy of the cache per step and no gradient into it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache


class FrozenWindowLayer(CacheLayerMixin):
    """One attention layer's frozen K/V; `update` returns a view of the first ``start + q_len`` positions."""

    is_sliding = False
    is_croppable = False
    is_compileable = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        # typed, never-None handles on the frozen tensors; `keys`/`values` (the base class's Optional
        # attributes that transformers reads) are the very same tensors
        self.frozen_keys: torch.Tensor = keys.detach().requires_grad_(False)
        self.frozen_values: torch.Tensor = values.detach().requires_grad_(False)
        self.keys, self.values = self.frozen_keys, self.frozen_values
        self.dtype, self.device = self.frozen_keys.dtype, self.frozen_keys.device
        self.is_initialized = True
        self.start = self.length

    @property
    def length(self) -> int:
        return self.frozen_keys.shape[-2]

    def lazy_initialization(self, key_states, value_states) -> None:  # never lazy: built from a prefill
        raise RuntimeError("FrozenWindowLayer is constructed from prefill tensors")

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        q_len = key_states.shape[-2]
        end = self.start + q_len
        if end > self.length:
            raise RuntimeError(
                f"span [{self.start}, {end}) reaches past the frozen cache of length {self.length}; "
                "the frozen cache is read-only and cannot be extended"
            )
        return self.frozen_keys[..., :end, :], self.frozen_values[..., :end, :]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.start + query_length, 0

    def get_seq_length(self) -> int:
        return self.start

    def get_max_length(self) -> int:
        return self.length

    def reset(self) -> None:
        raise RuntimeError("the frozen prefix cache is read-only")

    def crop(self, tokens_to_remove: int) -> None:
        raise RuntimeError("the frozen prefix cache is read-only")


class FrozenPrefixCache(Cache):
    """Read-only view of a prefill cache; `window(start)` positions the next forward at absolute `start`.

    Outside a `window(...)` block the cache reports its full length, so a forward would be placed *after*
    the prefix and raise (it cannot append). Use `decoding_cache()` for generation: it returns a fresh
    `DynamicCache` seeded with the frozen tensors (one copy per generation, never per step).
    """

    def __init__(self, layers: list[FrozenWindowLayer]):
        base_layers: list[Any] = list(layers)  # Cache's list is invariant in its layer type
        super().__init__(layers=base_layers)
        self.frozen_layers: list[FrozenWindowLayer] = list(layers)

    @classmethod
    def from_cache(cls, cache: Cache) -> FrozenPrefixCache:
        layers = []
        for i, layer in enumerate(cache.layers):
            if getattr(layer, "is_sliding", False):
                raise ValueError(
                    f"layer {i} uses a sliding-window cache; qTTT's frozen cache supports full attention only"
                )
            keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
            if keys is None or values is None:
                raise ValueError(f"cache layer {i} is empty: run the prefill forward first")
            layers.append(FrozenWindowLayer(keys, values))
        return cls(layers)

    @property
    def length(self) -> int:
        return self.frozen_layers[0].length

    @contextmanager
    def window(self, start: int):
        """Place the next forward's first token at absolute position `start` (span forward)."""
        if not 0 <= start < self.length:
            raise ValueError(f"window start {start} outside the cached prefix [0, {self.length})")
        for layer in self.frozen_layers:
            layer.start = start
        try:
            yield self
        finally:
            for layer in self.frozen_layers:
                layer.start = layer.length

    def tensors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The frozen (keys, values) per layer (the very tensors, not copies)."""
        return [(layer.frozen_keys, layer.frozen_values) for layer in self.frozen_layers]

    def decoding_cache(self) -> DynamicCache:
        """A growable cache that starts from the frozen prefix; new tokens go into it, never into `self`."""
        return DynamicCache(ddp_cache_data=[(k, v) for k, v in self.tensors()])
