"""E2: one forget step raises the aux head's entropy; with forgetting off, the sieve *is* ERM."""

import pytest
import torch
from torch import nn

from feature_sieve import ERM, FeatureSieve, SmallCNN, fit, forget_loss_wrong_sign, prediction_entropy


def _trained_aux_sieve(color_digits, forget_loss=None):
    x, y, g, _ = color_digits["train"].tensors
    torch.manual_seed(0)
    kw = {} if forget_loss is None else {"forget_loss": forget_loss}
    s = FeatureSieve(
        SmallCNN(2, 2, 8), "conv1", 2, x[:2], aux_head="linear", forget_every=0, forget_lr=0.05, **kw
    )
    for step in range(60):  # identify only: the aux head learns what conv1 makes readable
        sl = slice((step * 64) % 1000, (step * 64) % 1000 + 64)
        s.identify_step(x[sl], y[sl])
    return s, x[:256], y[:256], (g[:256] % 2)


def test_one_forget_step_raises_aux_entropy(color_digits):
    s, x, y, a = _trained_aux_sieve(color_digits)
    with torch.no_grad():
        h0 = prediction_entropy(s.aux_logits(x)).item()
    s.forget_step(x, y)
    with torch.no_grad():
        logits = s.aux_logits(x)
    assert prediction_entropy(logits).item() > h0 + 1e-4
    assert h0 < 0.69  # the aux head had learned something (below log 2)


def test_wrong_sign_control_lowers_aux_entropy(color_digits):
    """The control fails the sign test: pulling the aux head toward the labels sharpens it."""
    s, x, y, a = _trained_aux_sieve(color_digits, forget_loss=forget_loss_wrong_sign)
    with torch.no_grad():
        h0 = prediction_entropy(s.aux_logits(x)).item()
    s.forget_step(x, y)
    with torch.no_grad():
        assert prediction_entropy(s.aux_logits(x)).item() < h0


class BNNet(nn.Module):
    """A net with BatchNorm and dropout below and above the sieve layer (RNG + running stats)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.drop = nn.Dropout(0.2)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(8 * 64, 2)

    def forward(self, x):
        return self.fc(self.body(self.drop(self.stem(x))).flatten(1))


@pytest.mark.parametrize("efficient", [True, False])
def test_forgetting_disabled_equals_erm_trajectory(color_digits, efficient):
    train = torch.utils.data.TensorDataset(*(t[:256] for t in color_digits["train"].tensors))
    torch.manual_seed(3)
    m_erm = BNNet()
    torch.manual_seed(3)
    m_sv = BNNet()
    erm = ERM(m_erm, 2, lr=0.05)
    sv = FeatureSieve(
        m_sv,
        "stem",
        2,
        (2, 8, 8),
        aux_head="conv",
        aux_depth=1,
        aux_width=4,
        forget_every=0,
        lr=0.05,
        efficient=efficient,
    )
    torch.manual_seed(7)
    fit(erm, train, 12, batch_size=32, selector="last", seed=5, progress=False)
    torch.manual_seed(7)
    fit(sv, train, 12, batch_size=32, selector="last", seed=5, progress=False)
    for (n, a), (_, b) in zip(m_erm.state_dict().items(), m_sv.state_dict().items()):
        assert torch.equal(a, b), f"{n} differs from ERM"
    # and forgetting does change the trajectory
    torch.manual_seed(3)
    m_f = BNNet()
    sf = FeatureSieve(m_f, "stem", 2, (2, 8, 8), aux_head="linear", forget_every=1, forget_lr=0.5, lr=0.05)
    torch.manual_seed(7)
    fit(sf, train, 12, batch_size=32, selector="last", seed=5, progress=False)
    assert not torch.equal(m_f.stem[0].weight, m_erm.stem[0].weight)


def test_inference_is_the_plain_model_and_export_has_no_aux(color_digits):
    x = color_digits["test"].tensors[0][:8]
    s = FeatureSieve(SmallCNN(2, 2, 8), "conv1", 2, x, aux_head="linear")
    s.eval()
    assert torch.equal(s(x), s.model(x))
    assert set(s.state_dict_for_export()) == set(s.model.state_dict())
