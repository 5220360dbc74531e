"""Tests added for mutants that survived the mutation pass over slim.py / units.py."""

import pytest
import torch

from tracker_prune import Pruner, slim_param_count
from tracker_prune.trackers import build_tracker


def test_param_count_refuses_a_masked_residual_group_passed_in_masks():
    """The residual check must read the masks argument, not only the gates' stored masks."""
    torch.manual_seed(0)
    m = build_tracker("cnn")
    p = Pruner(m, "l1", group_residual=True)
    masks = p.masks(0.5)
    assert any(not bool(v.all()) for n, v in masks.items() if n.startswith("residual_gates"))
    with pytest.raises(ValueError, match="grouped residual"):
        slim_param_count(m, masks)
    full = {n: torch.ones_like(v) for n, v in masks.items()}
    assert slim_param_count(m, full) == sum(q.numel() for q in m.parameters() if q is not None) - sum(
        u.zeta.numel() for u in p.units.values()
    )


def test_param_count_without_biases():
    """Bias-free qkv / proj / fc1 / fc2: the count must not add bias terms that do not exist."""
    from timm.layers import Attention, Mlp
    from torch import nn

    from tracker_prune import slim

    torch.manual_seed(0)
    block = nn.Module()
    block.attn = Attention(16, num_heads=2, qkv_bias=False, proj_bias=False)
    block.mlp = Mlp(16, 32, bias=False)
    p = Pruner(block, "l1")
    masks = p.masks(0.4, scope="layerwise")
    assert slim_param_count(block, masks) == sum(q.numel() for q in slim(block, masks).parameters())
