"""Acceptance tests: slimmed == masked (float64), exact param formula, scale, zero channels, residuals."""

import copy

import pytest
import torch
from timm.layers import Attention, Mlp
from torch import nn

from tracker_prune import Pruner, set_masks, slim, slim_param_count
from tracker_prune.cost import count_flops, count_params
from tracker_prune.trackers import build_tracker
from tracker_prune.units import GatedAttention, GatedBatchNorm2d, SlimAttention


def _inputs(B=2):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(B, 3, 32, 32, generator=g, dtype=torch.float64),
        torch.randn(B, 3, 64, 64, generator=g, dtype=torch.float64),
    )


def _random_gated(arch, seed=0):
    torch.manual_seed(seed)
    m = build_tracker(arch).double()
    p = Pruner(m, "vitslim")
    # non-trivial BN statistics, betas and gates so that any slicing/folding error shows
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                mod.bias.uniform_(-0.5, 0.5)
    for u in p.units.values():
        u.zeta.data.uniform_(-0.5, 1.5)
    m.eval()
    return m, p


def _uneven_masks(p, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for i, (n, u) in enumerate(p.units.items()):
        mk = torch.rand(u.mask.shape, generator=g) < 0.5
        if isinstance(u, GatedAttention):
            mk[0] = False  # an emptied head
            mk[1] = torch.arange(mk.shape[1]) < 3  # head 1 keeps 3 dims
            mk[2] = torch.arange(mk.shape[1]) < 7  # head 2 keeps 7 dims -> uneven, padded to 7
        if i == len(p.units) - 2:
            mk[:] = False  # one whole unit emptied (MLP or conv group)
        masks[n] = mk
    return masks


@pytest.mark.parametrize("arch", ["cnn", "vit", "hybrid"])
def test_slim_equals_masked_float64(arch):
    m, p = _random_gated(arch)
    masks = _uneven_masks(p)
    set_masks(m, masks)
    s = slim(m).eval()
    z, x = _inputs()
    a, b = m(z, x), s(z, x)
    assert torch.allclose(a["score"], b["score"], atol=1e-10, rtol=0)
    assert torch.allclose(a["box"], b["box"], atol=1e-9, rtol=0)
    assert count_params(s) < count_params(m)
    assert sum(q.numel() for q in s.parameters()) == slim_param_count(m)
    assert not any(isinstance(mod, (GatedAttention, GatedBatchNorm2d)) for mod in s.modules())


def test_param_formula_by_hand():
    D, H, d, hid = 16, 2, 8, 32
    block = nn.Module()
    block.attn = Attention(D, num_heads=H, qkv_bias=True)
    block.mlp = Mlp(D, hid)
    Pruner(block, "l1")
    attn_mask = torch.zeros(H, d, dtype=torch.bool)
    attn_mask[0, :3] = True  # head 0 keeps 3 dims, head 1 emptied -> 1 head of 3 dims
    mlp_mask = torch.zeros(hid, dtype=torch.bool)
    mlp_mask[:5] = True
    masks = {"attn": attn_mask, "mlp": mlp_mask}
    expected = (3 * D * 3 + 3 * 3 + 3 * D + D) + (D * 5 + 5 + 5 * D + D)
    assert slim_param_count(block, masks) == expected
    s = slim(block, masks)
    assert sum(q.numel() for q in s.parameters()) == expected
    assert s.attn.num_heads == 1 and s.attn.head_dim == 3


def test_slimmed_head_keeps_original_scale():
    torch.manual_seed(0)
    D, H, d = 16, 2, 8
    attn = Attention(D, num_heads=H, qkv_bias=True).double().eval()
    holder = nn.Sequential(attn)
    Pruner(holder, "l1")
    mk = torch.zeros(H, d, dtype=torch.bool)
    mk[0, :3] = True
    mk[1, 2:] = True  # 6 dims -> head 0 padded to 6
    s = slim(holder, {"0": mk}).eval()
    assert isinstance(s[0], SlimAttention)
    assert s[0].scale == pytest.approx(d**-0.5)
    set_masks(holder, {"0": mk})
    x = torch.randn(3, 5, D, dtype=torch.float64) * 3
    assert torch.allclose(holder(x), s(x), atol=1e-12)
    wrong = copy.deepcopy(s)
    wrong[0].scale = s[0].head_dim ** -0.5  # the Torch-Pruning-style bug: rescale to the slim dim
    assert not torch.allclose(holder(x), wrong(x), atol=1e-6)


def test_pruned_cnn_channel_outputs_exact_zero():
    m, p = _random_gated("cnn")
    name = "backbone.1.bn1"
    mk = torch.ones_like(p.units[name].mask)
    mk[::2] = False
    set_masks(m, {name: mk})
    out = {}

    def hook(mod, args, o):
        out.setdefault("y", o)

    p.units[name].register_forward_hook(hook)
    m(*_inputs())
    assert p.units[name].bn.bias[~mk].abs().min() > 0  # beta is non-zero, yet the output is 0
    assert torch.all(out["y"][:, ~mk] == 0)
    assert torch.any(out["y"][:, mk] != 0)


def test_residual_channels_never_sliced():
    m, p = _random_gated("cnn")
    masks = {n: torch.zeros_like(u.mask) for n, u in p.units.items()}  # prune every internal channel
    s = slim(m, masks).eval()
    for orig, new in ((m.backbone[1], s.backbone[1]), (m.backbone[3], s.backbone[3])):
        assert new.conv2.out_channels == orig.conv2.out_channels
        assert new.bn2.num_features == orig.bn2.num_features
        assert new.conv1.in_channels == orig.conv1.in_channels
        assert new.conv1.out_channels == 1  # emptied group keeps one zero channel
    assert s.backbone[2][0].out_channels == m.backbone[2][0].out_channels
    set_masks(m, masks)
    z, x = _inputs()
    assert torch.allclose(m(z, x)["box"], s(z, x)["box"], atol=1e-9)


def test_timm_resnet_blocks_residual_untouched():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False, num_classes=0).double().eval()
    p = Pruner(net, "l1")
    assert len(p.units) == 8  # one internal group per BasicBlock
    masks = p.masks(0.25)
    set_masks(net, masks)
    s = slim(net).eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    assert torch.allclose(net(x), s(x), atol=1e-9)
    from timm.models.resnet import BasicBlock

    blocks = [n for n, b in net.named_modules() if isinstance(b, BasicBlock)]
    assert len(blocks) == 8
    for n in blocks:
        b1, b2 = net.get_submodule(n), s.get_submodule(n)
        assert b2.conv2.out_channels == b1.conv2.out_channels, n  # residual stream width kept
        assert b2.bn2.num_features == b1.bn2.num_features
        assert b2.conv1.out_channels == int(masks[n + ".bn1"].sum())


def test_budget_one_is_identity_bitwise():
    torch.manual_seed(0)
    m = build_tracker("vit").eval()
    p = Pruner(m, "vitslim")
    p.apply(p.masks(1.0))
    s = slim(m).eval()
    z, x = (t.float() for t in _inputs())
    assert torch.equal(m(z, x)["box"], s(z, x)["box"])
    assert count_params(s) == count_params(m)


@pytest.mark.parametrize("arch", ["vit", "cnn"])
def test_flops_drop_with_budget(arch):
    torch.manual_seed(0)
    m = build_tracker(arch)
    z, x = (t.float() for t in _inputs(1))
    p = Pruner(m, "l1", example_inputs=(z, x))
    flops, params = [], []
    for b in (1.0, 0.5, 0.25, 0.1):
        s = slim(m, p.masks(b, kind="flops"))
        flops.append(count_flops(s, (z, x)))
        params.append(count_params(s))
    assert all(a > b for a, b in zip(flops, flops[1:])), flops
    assert all(a > b for a, b in zip(params, params[1:])), params


def test_params_budget_realised_within_granularity():
    torch.manual_seed(0)
    m = build_tracker("vit")
    p = Pruner(m, "l1")
    dense = slim_param_count(m, {n: torch.ones_like(u.mask) for n, u in p.units.items()})
    empty = slim_param_count(m, {n: torch.zeros_like(u.mask) for n, u in p.units.items()})
    cost = p.element_cost("params")
    total = sum(cost[n] * u.mask.numel() for n, u in p.units.items())
    for b in (0.5, 0.2):
        masks = p.masks(b, kind="params", scope="global", min_keep=0)
        ideal = sum(cost[n] * int(masks[n].sum()) for n in masks) / total
        granularity = max(cost.values()) / total
        assert b - granularity <= ideal <= b, ideal
        # realised (slimmed) params add the zero padding of uneven heads, never remove any
        realised = (slim_param_count(m, masks) - empty) / (dense - empty)
        assert realised >= ideal - 1e-9
