"""Torch-Pruning (DepGraph) peer for the benchmark only (DESIGN.md §4.1, §5).

Same pruning scope as ours, residual stream untouched:

* CNN tracker: only the internal convs (ResBlock conv1, the head's hidden conv) are roots; every
  other conv is ignored.
* ViT / hybrid tracker: following Torch-Pruning's ``examples/transformers/prune_timm_vit.py``
  (``num_heads={attn.qkv: H}``, ``prune_head_dims=True``, fc2 ignored = "bottleneck" mode), the
  roots are every ``attn.qkv`` (head dims, the same count removed from every head), every
  ``mlp.fc1`` (hidden units) and the head's hidden conv; patch embedding, ``attn.proj``,
  ``mlp.fc2`` and the output conv are ignored, so the embed dim is never pruned. Afterwards each
  timm ``Attention`` gets ``head_dim``/``attn_dim`` updated as in the TP example; timm's fused
  attention then uses ``head_dim ** -0.5`` of the *pruned* dim (TP's behaviour, DESIGN.md §4.1) -
  the peer is fine-tuned after pruning, so it adapts.

TP's ``pruning_ratio`` is per channel, so `tp_prune_to_params` bisects it until the realised
parameter count matches a target (DESIGN.md §5 item 3).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

from torch import nn

from .cost import count_params
from .discover import conv_pairs, is_attention, is_mlp


def _vit_scope(m: nn.Module):
    """(num_heads, ignored layers) for a tracker built from timm Attention / Mlp (un-gated)."""
    num_heads, roots = {}, set()
    for mod in m.modules():
        if is_attention(mod):
            num_heads[mod.qkv] = mod.num_heads
            roots.add(id(mod.qkv))
        elif is_mlp(mod):
            roots.add(id(mod.fc1))
    roots |= {id(getattr(p.block, p.producer)) for p in conv_pairs(m)}
    ignored = [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear)) and id(mod) not in roots]
    return num_heads, ignored


def tp_prune(model: nn.Module, ratio: float, example_inputs: tuple) -> nn.Module:
    """A Torch-Pruning copy of ``model`` with L1 (magnitude) importance at channel ratio ``ratio``."""
    import torch_pruning as tp

    m = copy.deepcopy(model).eval()
    num_heads, ignored = _vit_scope(m)
    with warnings.catch_warnings():  # TP warns about the (unpruned) positional-embedding parameters
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            m,
            example_inputs,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=ratio,
            ignored_layers=ignored,
            num_heads=num_heads,
            prune_head_dims=True,
            prune_num_heads=False,
        )
        pruner.step()
    for module in m.modules():  # as in TP's prune_timm_vit.py
        if is_attention(module):
            mod: Any = module  # a timm Attention (duck-typed)
            mod.head_dim = mod.qkv.out_features // (3 * mod.num_heads)
            mod.attn_dim = mod.num_heads * mod.head_dim
    return m


def tp_prune_to_params(
    model: nn.Module, target_params: int, example_inputs: tuple, iters: int = 10
) -> nn.Module:
    """Bisect TP's channel ratio so the pruned model has about ``target_params`` parameters (never more)."""
    lo, hi, best = 0.0, 0.99, None
    for _ in range(iters):
        mid = (lo + hi) / 2
        cand = tp_prune(model, mid, example_inputs)
        if count_params(cand) > target_params:
            lo = mid
        else:
            hi, best = mid, cand
    return best if best is not None else tp_prune(model, hi, example_inputs)
