"""Feature taps on timm, torchvision-style and plain modules; early stop; tuple outputs."""

import copy

import pytest
import torch
from torch import nn

from early_readout import EarlyReadoutDistiller, FeatureTap
from early_readout.readout import ReadoutHead


class TupleBlock(nn.Module):
    """Returns (hidden, extra) like a Hugging Face transformer layer."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x), None


class TokenModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.num_classes = 3
        self.blocks = nn.ModuleList([TupleBlock(), TupleBlock()])
        self.head = nn.Linear(4, 3)

    def forward(self, x):  # x: (B, T, 4)
        for b in self.blocks:
            x = b(x)[0]
        return self.head(x.mean(1))


def test_tap_tuple_output_and_early_stop():
    m = TokenModel()
    x = torch.randn(2, 5, 4)
    calls = []
    m.head.register_forward_hook(lambda *a: calls.append(1))
    f = FeatureTap(m, "blocks.0", stop=True).features(x)
    assert f.shape == (2, 5, 4) and not f.requires_grad and calls == []  # stopped before the head
    assert torch.allclose(f, m.blocks[0].lin(x))
    head = ReadoutHead(3)
    assert head(f).shape == (2, 3) and head.resolved_kind == "linear"  # tokens mean-pooled


def test_timm_student_with_basicblock_readout():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    student = timm.create_model("resnet10t", pretrained=False, num_classes=2, in_chans=1)
    teacher = timm.create_model("resnet10t", pretrained=False, num_classes=2, in_chans=1)
    x, y = torch.randn(8, 1, 16, 16), torch.tensor([0, 1] * 4)
    d = EarlyReadoutDistiller(teacher, student, 2, 8, readout_layer="layer1", readout_lr=0.1)
    before = copy.deepcopy(student.state_dict())
    st = d.reweigh([(x, y, torch.zeros(8, dtype=torch.long), torch.arange(8))])
    assert d.head.resolved_kind == "basicblock" and 0 <= st["n_wrong"] <= 8
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="different class counts"):
        EarlyReadoutDistiller(timm.create_model("resnet10t", num_classes=5), student, 2, 8)


def test_torchvision_resnet_names():
    tv = pytest.importorskip("torchvision")
    m = tv.models.resnet18(num_classes=2)
    f = FeatureTap(m, "layer1", stop=True).features(torch.randn(1, 3, 32, 32))
    assert f.shape == (1, 64, 8, 8)
    with pytest.raises(KeyError, match="layer1.0.conv1"):
        FeatureTap(m, "layer5")
