"""Realised latency drops with the budget (slow: wall-clock timing on a larger ViT)."""

import pytest
import torch

from tracker_prune import Pruner, slim
from tracker_prune.cost import latency_ms
from tracker_prune.trackers import build_tracker


@pytest.mark.slow
def test_slim_latency_drops_with_budget_masked_does_not_shrink():
    torch.manual_seed(0)
    m = build_tracker("vit", embed_dim=192, depth=4, num_heads=4, mlp_ratio=4.0).eval()
    x = (torch.randn(8, 3, 32, 32), torch.randn(8, 3, 64, 64))
    p = Pruner(m, "l1")
    dense = latency_ms(slim(m, p.masks(1.0)), x, runs=15)
    small = latency_ms(slim(m, p.masks(0.1)), x, runs=15)
    set_all = p.masks(0.1)
    from tracker_prune import set_masks

    set_masks(m, set_all)
    masked = latency_ms(m, x, runs=15)
    assert small < 0.7 * dense, (small, dense)
    assert small < 0.7 * masked, (small, masked)
