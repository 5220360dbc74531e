"""The sieve attaches to timm models, torchvision ResNets and plain modules through hooks."""

import pytest
import torch
from torch import nn

from feature_sieve import FeatureSieve, execution_order, forward_to


def _one_step(model, layer, shape, **kw):
    s = FeatureSieve(model, layer, 2, shape, forget_every=1, **kw)
    x = torch.randn(4, *shape)
    before = {n: p.detach().clone() for n, p in s.model.named_parameters()}
    out = s.training_step(x, torch.tensor([0, 1, 0, 1]), 0)
    assert out["forgot"] and all(torch.isfinite(torch.tensor(v)) for k, v in out.items() if k != "forgot")
    changed = {n for n, p in s.model.named_parameters() if not torch.equal(before[n], p)}
    assert changed, "no backbone parameter changed"
    return s


def test_timm_resnet():
    timm = pytest.importorskip("timm")
    m = timm.create_model("resnet10t", pretrained=False, num_classes=2)
    s = _one_step(m, "layer1", (3, 32, 32), aux_head="conv", aux_depth=1, aux_width=16)
    names = {n for n, p in m.named_parameters() if any(p is q for q in s.lower_params)}
    assert any(n.startswith("layer1.") for n in names) and not any(n.startswith("layer2.") for n in names)
    assert any(n.startswith("conv1.") for n in names)


def test_timm_vit_tokens_use_mean_pooling_and_pos_embed_is_lower():
    timm = pytest.importorskip("timm")
    m = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=2,
        img_size=32,
        patch_size=8,
        depth=2,
        embed_dim=32,
        num_heads=2,
    )
    s = _one_step(m, "blocks.0", (3, 32, 32), aux_head="linear")
    assert any(p is m.pos_embed for p in s.lower_params)
    assert not any(p is q for q in s.lower_params for p in m.blocks[1].parameters())


def test_torchvision_resnet_freeze_bn():
    tv = pytest.importorskip("torchvision")
    m = tv.models.resnet18(num_classes=2)
    s = _one_step(m, "layer1", (3, 32, 32), aux_head="conv", aux_depth=1, aux_width=8, freeze_bn=True)
    s.train()
    assert not m.bn1.training and m.layer1[0].conv1.training is True


def test_plain_sequential_and_truncated_forward():
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    assert execution_order(m, torch.zeros(2, 1, 4, 4)) == ["0", "1", "2", "3", ""]
    calls = []
    m[3].register_forward_hook(lambda *a: calls.append(1))
    h = forward_to(m, "2", torch.zeros(2, 1, 4, 4))
    assert h.shape == (2, 8) and calls == [], "the forward must stop at the sieve layer"
    _one_step(m, "1", (1, 4, 4), aux_head="mlp", aux_depth=1, aux_width=4)
