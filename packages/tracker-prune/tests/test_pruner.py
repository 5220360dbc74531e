"""Pruner: budgets, scopes, regulariser, frozen masks, bad input."""

import math

import pytest
import torch
from timm.layers import Attention, Mlp
from torch import nn

from tracker_prune import Pruner, slim
from tracker_prune.trackers import build_tracker


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, math.nan, "0.5"])
def test_bad_budget(bad):
    p = Pruner(build_tracker("cnn"), "l1")
    with pytest.raises(ValueError, match="budget"):
        p.masks(bad)


def test_no_prunable_layers():
    with pytest.raises(ValueError, match="no prunable layers"):
        Pruner(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "l1")


def test_unsupported_layers_inside_blocks():
    # nothing else prunable: refused, naming the layer and why
    with pytest.raises(ValueError, match="no prunable layers.*q_norm"):
        Pruner(nn.Sequential(Attention(16, 2, qk_norm=True, norm_layer=nn.LayerNorm)))
    with pytest.raises(ValueError, match="no prunable layers.*norm between act and fc2"):
        Pruner(nn.Sequential(Mlp(16, 32, norm_layer=nn.LayerNorm)))
    # next to a prunable layer: left dense, reported in `skipped` (and refused with strict=True)
    net = nn.Sequential(Attention(16, 2, qk_norm=True, norm_layer=nn.LayerNorm), Mlp(16, 32))
    with pytest.warns(UserWarning, match="q_norm"):
        p = Pruner(net, "l1")
    assert [s.name for s in p.skipped] == ["0"] and "q_norm" in p.skipped[0].reason
    assert list(p.units) == ["1"]
    with pytest.raises(TypeError, match="q_norm"):
        Pruner(
            nn.Sequential(Attention(16, 2, qk_norm=True, norm_layer=nn.LayerNorm), Mlp(16, 32)), strict=True
        )


def test_bad_method_kind_scope():
    with pytest.raises(ValueError, match="method"):
        Pruner(build_tracker("cnn"), "magic")
    p = Pruner(build_tracker("cnn"), "l1")
    with pytest.raises(ValueError, match="kind"):
        p.masks(0.5, kind="volume")
    with pytest.raises(ValueError, match="scope"):
        p.masks(0.5, scope="blockwise")
    with pytest.raises(ValueError, match="example_inputs"):
        p.masks(0.5, kind="flops")


def test_channel_budget_counts_follow_official_threshold():
    torch.manual_seed(0)
    p = Pruner(build_tracker("vit"), "random")
    b = 0.3
    masks = p.masks(b, kind="channels", scope="global", min_keep=0)
    for kind in ("attn", "mlp", "conv"):
        names = [n for n, u in p.units.items() if u.unit_kind == kind]
        n_all = sum(p.units[n].mask.numel() for n in names)
        kept = sum(int(masks[n].sum()) for n in names)
        assert kept == n_all - int((1 - b) * n_all)
    lw = p.masks(b, scope="layerwise", min_keep=0)
    for n, u in p.units.items():
        assert int(lw[n].sum()) == u.mask.numel() - int((1 - b) * u.mask.numel())


def test_global_extreme_budget_empties_layers_min_keep_does_not():
    torch.manual_seed(0)
    m = build_tracker("vit")
    p = Pruner(m, "vitslim")
    # make block 0's MLP gates the smallest, as a search would
    p.units["blocks.0.mlp"].zeta.data.fill_(0.01)
    g = p.masks(0.05, scope="global", min_keep=0)
    assert int(g["blocks.0.mlp"].sum()) == 0
    k = p.masks(0.05, scope="global", min_keep=2)
    assert all(int(v.sum()) >= 2 for v in k.values())
    s = slim(m, g)  # an emptied MLP slims to a 0-unit MLP: the block becomes a residual identity
    z, x = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    assert s(z, x)["box"].shape == (1, 64, 4)


def test_regularizer_is_l1_of_gates_and_netslim_uses_gamma():
    m = build_tracker("hybrid")
    p = Pruner(m, "vitslim", weights={"attn": 1.0, "mlp": 2.0, "conv": 3.0})
    expected = sum(
        {"attn": 1.0, "mlp": 2.0, "conv": 3.0}[u.unit_kind] * u.zeta.numel() for u in p.units.values()
    )
    assert p.regularizer().item() == pytest.approx(expected)
    m2 = build_tracker("cnn")
    p2 = Pruner(m2, "netslim", weights={"conv": 1.0})
    for u in p2.units.values():
        u.bn.weight.data.fill_(0.5)
    assert p2.regularizer().item() == pytest.approx(0.5 * sum(u.bn.weight.numel() for u in p2.units.values()))
    p2.regularizer().backward()
    assert all(u.bn.weight.grad is not None for u in p2.units.values())
    assert all(not u.zeta.requires_grad for u in p2.units.values())


def test_masks_frozen_during_finetune_and_fold_scales_exact():
    torch.manual_seed(0)
    m = build_tracker("vit").double().eval()
    p = Pruner(m, "vitslim")
    for u in p.units.values():
        u.zeta.data.uniform_(0.5, 1.5)
    masks = {n: torch.ones_like(u.mask) for n, u in p.units.items()}
    z, x = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.randn(2, 3, 64, 64, dtype=torch.float64)
    before = m(z, x)["box"]
    p.apply(masks, fold_scales=True)
    assert torch.allclose(before, m(z, x)["box"], atol=1e-10)  # folding keeps the function
    masks = p.masks(0.5)
    p.apply(masks)
    m.train()
    opt = torch.optim.SGD([q for q in m.parameters() if q.requires_grad], lr=0.1)
    snap = {n: (u.zeta.clone(), u.mask.clone()) for n, u in p.units.items()}
    for _ in range(3):
        opt.zero_grad()
        m(z, x)["box"].sum().backward()
        opt.step()
    for n, u in p.units.items():
        assert torch.equal(u.zeta, snap[n][0]) and torch.equal(u.mask, snap[n][1])
        assert not u.zeta.requires_grad
