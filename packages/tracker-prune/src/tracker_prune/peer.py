"""Torch-Pruning (DepGraph) peer for the benchmark only (notes §4.1, §5).

Same pruning scope as ours: only the internal convs (ResBlock conv1 and the head's hidden conv) are
roots; every other conv is ignored so residual-stream channels stay intact. TP's ``pruning_ratio`` is
per channel, so we bisect it until the realised parameter count matches a target (notes §5 item 3).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .cost import count_params
from .discover import conv_pairs


def tp_prune(model: nn.Module, ratio: float, example_inputs: tuple) -> nn.Module:
    import torch_pruning as tp

    m = copy.deepcopy(model).eval()
    internal = {id(getattr(p.block, p.producer)) for p in conv_pairs(m)}
    ignored = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d) and id(mod) not in internal]
    imp = tp.importance.MagnitudeImportance(p=1)
    tp.pruner.MetaPruner(
        m, example_inputs, importance=imp, pruning_ratio=ratio, ignored_layers=ignored
    ).step()
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


@torch.no_grad()
def _check(m, x):  # pragma: no cover - debugging helper
    return m(*x)
