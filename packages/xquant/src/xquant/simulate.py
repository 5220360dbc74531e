"""Teacher-forced perplexity under a cache method (the paper's PPL protocol, §4.1 / DESIGN.md pitfall 4).

One forward pass over the whole sequence with a cache built with ``simulate=True``: every token's K/V
(not only past ones) are rebuilt from the quantized store, queries and MLPs stay exact, all tokens
are quantized (no full-precision window). Same code path as real decoding, so the numbers come from
the same quantizer, packing, CL chain and rematerialization.
"""

from __future__ import annotations

import math

import torch
from transformers import DynamicCache

from .cache import XQuantCache
from .config import KIVIConfig, XQuantConfig
from .kivi import KIVICache


def make_cache(model, config, simulate: bool = False):
    """XQuantConfig -> XQuantCache, KIVIConfig -> KIVICache, None -> DynamicCache (the FP16/FP32 baseline)."""
    if config is None:
        return DynamicCache(config=model.config)
    if isinstance(config, XQuantConfig):
        return XQuantCache.from_model(model, config, simulate=simulate)
    if isinstance(config, KIVIConfig):
        return KIVICache.from_model(model, config, simulate=simulate)
    raise TypeError(f"expected XQuantConfig, KIVIConfig or None, got {type(config).__name__}")


@torch.no_grad()
def simulate_loss(model, input_ids: torch.Tensor, config=None) -> float:
    """Mean next-token NLL (nats) of `input_ids` [B, T] with K/V of every token from the cache `config`."""
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must be [batch, tokens>=2], got {tuple(input_ids.shape)}")
    cache = make_cache(model, config, simulate=True)
    try:
        out = model(input_ids=input_ids, labels=input_ids, past_key_values=cache, use_cache=True)
    finally:
        if hasattr(cache, "detach"):
            cache.detach()
    return float(out.loss)


@torch.no_grad()
def simulate_perplexity(model, windows: torch.Tensor, config=None, batch_size: int = 8) -> float:
    """exp(mean NLL) over fixed windows [N, T], batched."""
    losses = [
        simulate_loss(model, windows[i : i + batch_size], config) * len(windows[i : i + batch_size])
        for i in range(0, len(windows), batch_size)
    ]
    return math.exp(sum(losses) / len(windows))
