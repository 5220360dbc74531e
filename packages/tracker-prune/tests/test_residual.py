"""Grouped residual-channel pruning (opt-in): one mask per residual group, sliced consistently everywhere."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import nn

from tracker_prune import Pruner, set_masks, slim, slim_param_count
from tracker_prune.cost import count_params
from tracker_prune.io import load, save
from tracker_prune.residual import ResidualGate
from tracker_prune.trackers import build_tracker


def _inputs(B=2):
    g = torch.Generator().manual_seed(3)
    return (
        torch.randn(B, 3, 32, 32, generator=g, dtype=torch.float64),
        torch.randn(B, 3, 64, 64, generator=g, dtype=torch.float64),
    )


def _grouped(arch, seed=0):
    torch.manual_seed(seed)
    m = build_tracker(arch).double()
    p = Pruner(m, "vitslim", group_residual=True)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                mod.bias.uniform_(-0.5, 0.5)
        if isinstance(mod, nn.LayerNorm):
            with torch.no_grad():
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    for u in p.units.values():
        u.zeta.data.uniform_(-0.5, 1.5)
    g = torch.Generator().manual_seed(seed)
    masks = {n: torch.rand(u.mask.shape, generator=g) < 0.6 for n, u in p.units.items()}
    for n, r in p.residual.items():  # random, non-contiguous residual masks
        masks[n] = torch.rand(r.width, generator=g) < 0.5
        masks[n][0] = True
    set_masks(m, masks)
    return m.eval(), p, masks


@pytest.mark.parametrize("arch", ["vit", "cnn", "hybrid"])
def test_grouped_residual_slim_equals_masked_float64(arch):
    m, p, masks = _grouped(arch)
    s = slim(m).eval()
    z, x = _inputs()
    a, b = m(z, x), s(z, x)
    assert torch.allclose(a["score"], b["score"], atol=1e-10, rtol=0)
    assert torch.allclose(a["box"], b["box"], atol=1e-9, rtol=0)
    assert count_params(s) < count_params(m)
    widths = {n.split(".")[-1]: int(v.sum()) for n, v in masks.items() if n.startswith("residual_gates")}
    assert s.residual_widths == widths and not hasattr(s, "residual_gates")
    if arch in ("vit", "hybrid"):
        k = widths["embed"]
        assert s.norm.normalized_shape == (k,) and s.pos_z.shape[-1] == k and s.pos_x.shape[-1] == k
        for blk in s.blocks:
            assert blk.norm1.normalized_shape == (k,) and blk.attn.qkv.in_features == k
            assert blk.attn.proj.out_features == k and blk.mlp.fc2.out_features == k
        assert s.head.conv1.in_channels == k
    if arch == "cnn":
        k0, k1 = widths["stage0"], widths["stage1"]
        bb = s.backbone
        assert bb[0][0].out_channels == k0 and bb[1].conv2.out_channels == k0 and bb[2][0].in_channels == k0
        assert bb[1].conv1.in_channels == k0 and bb[1].bn2.num_features == k0
        assert bb[3].bn2.num_features == k1 and s.head.conv1.in_channels == k1
    # no hooks survive in the slim model
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in s.modules())


def test_masked_channels_are_zero_throughout_the_stream():
    m, p, masks = _grouped("vit")
    off = ~masks["residual_gates.embed"]
    seen = []
    for blk in m.blocks:
        blk.register_forward_hook(lambda mod, a, o: seen.append(o))
    m(*_inputs())
    assert len(seen) == len(m.blocks)
    for o in seen:
        assert torch.all(o[..., off] == 0) and torch.any(o[..., ~off] != 0)


def test_masked_layernorm_uses_kept_channel_statistics_by_hand():
    ln = nn.LayerNorm(6).double()
    with torch.no_grad():
        ln.weight.copy_(torch.arange(1.0, 7.0))
        ln.bias.fill_(0.5)
    holder = nn.Module()
    holder.ln = ln
    gate = ResidualGate("g", 6, {"norms": [ln]})
    gate.mask.copy_(torch.tensor([True, False, True, True, False, True]))
    x = torch.tensor([[1.0, 100.0, 2.0, 4.0, -50.0, 9.0]], dtype=torch.float64)
    kept = torch.tensor([1.0, 2.0, 4.0, 9.0], dtype=torch.float64)
    mu, var = kept.mean(), kept.var(unbiased=False)  # 4.0, 9.5
    want = torch.zeros(1, 6, dtype=torch.float64)
    want[0, [0, 2, 3, 5]] = (kept - mu) / torch.sqrt(var + ln.eps) * torch.tensor([1.0, 3, 4, 6]) + 0.5
    assert torch.allclose(ln(x), want, atol=1e-12)
    ref = F.layer_norm(kept[None], (4,), ln.weight[[0, 2, 3, 5]], ln.bias[[0, 2, 3, 5]], ln.eps)
    assert torch.allclose(ln(x)[0, [0, 2, 3, 5]], ref[0], atol=1e-12)


def test_plain_layernorm_zeroing_would_not_be_exact():
    """Why the masked-statistics LN is needed: zeroing channels but keeping LN over all D differs."""
    m, p, masks = _grouped("vit")
    s = slim(m).eval()
    gate = m.residual_gates["embed"]
    for mod in m.modules():  # drop only the LN hooks: plain LN statistics over zeros
        for k in [
            k for k, fn in mod._forward_hooks.items() if getattr(fn, "__func__", None) is ResidualGate._norm
        ]:
            del mod._forward_hooks[k]
    assert gate.mask.sum() < gate.width
    z, x = _inputs()
    assert not torch.allclose(m(z, x)["box"], s(z, x)["box"], atol=1e-6)


def test_default_off_and_errors():
    m = build_tracker("vit")
    p = Pruner(m, "l1")
    assert p.residual == {} and not hasattr(m, "residual_gates")
    assert not any(n.startswith("residual") for n in p.masks(0.5))
    with pytest.raises(ValueError, match="residual groups"):
        Pruner(nn.Sequential(Attention(16, 2)), "l1", group_residual=True)
    m2, p2, masks = _grouped("cnn")
    masks["residual_gates.stage0"] = torch.zeros_like(masks["residual_gates.stage0"])
    with pytest.raises(ValueError, match="emptied"):
        slim(m2, masks)
    with pytest.raises(ValueError, match="grouped residual"):
        slim_param_count(m2)


def test_residual_masks_follow_channel_rule_and_io_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = build_tracker("hybrid").eval()
    p = Pruner(m, "l1", group_residual=True)
    masks = p.masks(0.3)
    for n, g in p.residual.items():
        assert int(masks[n].sum()) == g.width - int(0.7 * g.width)
    p.apply(masks)
    s = slim(m).eval()
    save(s, tmp_path / "s.pt")
    s2 = load(tmp_path / "s.pt")
    z, x = (t.float() for t in _inputs())
    assert torch.allclose(s(z, x)["box"], s2(z, x)["box"], atol=1e-5)
    assert torch.allclose(s(z, x)["box"], m(z, x)["box"], atol=1e-4)
