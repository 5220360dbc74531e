"""E1: each of the three updates changes only its own parameter group; schedule and loss details."""

import math

import pytest
import torch
from torch import nn

from feature_sieve import FeatureSieve, SmallCNN, forget_loss_uniform, lower_parameters


def _snap(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module):
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())}


def _sieve(kind="linear", **kw):
    torch.manual_seed(0)
    model = SmallCNN(2, 2, 8)
    return FeatureSieve(model, "conv1", 2, (2, 8, 8), aux_head=kind, aux_depth=1, aux_width=8, **kw)


def _batch(n=32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 2, 8, 8, generator=g), torch.randint(0, 2, (n,), generator=g)


@pytest.mark.parametrize("kind", ["linear", "conv", "mlp"])
@pytest.mark.parametrize("efficient", [True, False])
def test_each_update_changes_only_its_parameter_group(kind, efficient):
    s = _sieve(kind, efficient=efficient)
    x, y = _batch()
    m0, a0 = _snap(s.model), _snap(s.aux)
    s.identify_step(x, y)
    assert _changed(m0, s.model) == set(), "identify must not touch the backbone"
    assert _changed(a0, s.aux) == set(a0), "identify must update every aux-head parameter"

    m0, a0 = _snap(s.model), _snap(s.aux)
    s.forget_step(x, y)
    assert _changed(a0, s.aux) == set(), "forget must not touch the aux head"
    assert _changed(m0, s.model) == {"conv1.weight", "conv1.bias"}, (
        "forget: only layers at or below the sieve"
    )

    m0, a0 = _snap(s.model), _snap(s.aux)
    s.main_step(x, y)
    assert _changed(a0, s.aux) == set(), "main must not touch the aux head"
    assert _changed(m0, s.model) == set(m0), "main updates the whole network, lower layers included"


def test_training_step_order_and_forget_schedule_includes_step_zero():
    s = _sieve(forget_every=3)
    x, y = _batch()
    calls = []
    for name in ("identify_step", "forget_step", "main_step"):
        orig = getattr(s, name)
        setattr(s, name, lambda *a, _n=name, _o=orig: (calls.append(_n), _o(*a))[1])
    forgot = [s.training_step(x, y, step)["forgot"] for step in range(7)]
    assert forgot == [True, False, False, True, False, False, True]
    assert calls[:4] == ["identify_step", "forget_step", "main_step", "identify_step"]
    assert _sieve(forget_every=0).will_forget(0) is False


def test_default_optimizers_follow_the_official_code():
    s = FeatureSieve(SmallCNN(2, 2, 8), "conv1", 2, (2, 8, 8))
    fg = s.forget_opt.param_groups[0]
    assert fg["momentum"] == 0.0 and fg["weight_decay"] == 0.0 and fg["lr"] == 1e-2
    ag = s.aux_opt.param_groups[0]
    assert (ag["lr"], ag["momentum"], ag["weight_decay"]) == (1e-2, 0.9, 1e-4)
    mg = s.opt.param_groups[0]
    assert (mg["lr"], mg["momentum"], mg["weight_decay"]) == (1e-3, 0.9, 1e-4)
    assert s.aux.kind == "conv" and s.aux.depth == 2 and s.aux.width == 256  # official head
    assert s.forget_every == 5  # official forget_after_iters
    assert {id(p) for p in s.aux_params}.isdisjoint({id(p) for p in s.main_params})


def test_forget_loss_uniform_value_and_gradient():
    k = 5
    z = torch.zeros(4, k, requires_grad=True)
    loss = forget_loss_uniform(z)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(k))
    assert torch.allclose(z.grad, torch.zeros_like(z))
    z = torch.randn(3, k, requires_grad=True)
    forget_loss_uniform(z).backward()
    expected = (torch.softmax(z.detach(), 1) - 1.0 / k) / 3  # d/dz of the batch mean = (p - 1/K) / N
    assert torch.allclose(z.grad, expected, atol=1e-6)
    assert forget_loss_uniform(torch.tensor([[10.0, -10.0]])).item() > math.log(2)


def _torchvision_resnet18():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return tv.models.resnet18(num_classes=3)


@pytest.mark.parametrize("aux_pos", [1, 2, 3])
def test_lower_parameters_match_official_params_list_for_resnet(aux_pos):
    model = _torchvision_resnet18()
    got = lower_parameters(model, f"layer{aux_pos}", torch.zeros(2, 3, 32, 32))
    # official: params_list = [conv1, bn1, layer1, layer2, layer3, layer4, fc]; forget on params_list[:2+aux_pos]
    blocks = [model.conv1, model.bn1, model.layer1, model.layer2, model.layer3, model.layer4]
    want = [p for b in blocks[: 2 + aux_pos] for p in b.parameters()]
    assert [id(p) for p in got] == [id(p) for p in want]


def test_lower_parameters_include_ancestor_direct_params_and_skip_unused():
    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(4))
            self.embed = nn.Linear(4, 4)
            self.block = nn.Linear(4, 4)
            self.unused = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.block(self.embed(x) + self.pos))

    m = Tok()
    got = {id(p) for p in lower_parameters(m, "block", torch.zeros(2, 4))}
    want = {id(m.pos), *(id(p) for p in m.embed.parameters()), *(id(p) for p in m.block.parameters())}
    assert got == want
