"""Issue 18 regressions: a scale-invariant probe, a label probe that reads the features, buffers of
layers the forget step must not touch, root-level parameters used after the sieve layer, and JTT's
error set."""

import copy

import pytest
import torch
from torch import nn

from feature_sieve import ERM, FeatureSieve, SmallCNN, fit, lower_parameters
from feature_sieve.diagnostics import shortcut_probe
from feature_sieve.jtt import error_set, run_jtt


@pytest.fixture(scope="module")
def erm_model(color_digits):
    torch.manual_seed(0)
    m = SmallCNN(2, 2, 8)
    train = torch.utils.data.TensorDataset(*(t[:512] for t in color_digits["train"].tensors))
    fit(ERM(m, 2, lr=0.05), train, 60, batch_size=64, selector="last", progress=False)
    return m


def _rescaled(m, c=0.3):
    """conv1 (weight and bias) times c, conv2's weight times 1/c: through the ReLU, the same function."""
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        m2.conv1.weight.mul_(c)
        m2.conv1.bias.mul_(c)
        m2.conv2.weight.div_(c)
    return m2


@pytest.mark.parametrize("c", [0.3, 1e-3, 25.0])
def test_default_probe_is_invariant_to_a_function_preserving_rescale(erm_model, color_digits, c):
    x, y, g, _ = color_digits["test"].tensors
    m2 = _rescaled(erm_model, c)
    with torch.no_grad():
        assert torch.allclose(erm_model(x), m2(x), atol=1e-4, rtol=1e-4)  # identical function
    for attr in (g % 2, y):
        p1 = shortcut_probe(erm_model, "conv1", x, attr)
        p2 = shortcut_probe(m2, "conv1", x, attr)
        assert p1 == p2, (c, p1, p2)
    assert shortcut_probe(erm_model, "conv1", x, g % 2) > 0.95  # ERM reads the colour shortcut at conv1


def test_raw_probe_is_the_scale_dependent_one(erm_model, color_digits):
    """The old default (raw features, C=0.01) drops to chance under the same rescale: the bug."""
    x, _, g, _ = color_digits["test"].tensors
    raw = dict(standardize=False, C=0.01)
    assert shortcut_probe(erm_model, "conv1", x, g % 2, **raw) > 0.95
    assert shortcut_probe(_rescaled(erm_model, 0.3), "conv1", x, g % 2, **raw) < 0.7


class _Planted(nn.Module):
    """conv1's channel 0 carries a +-scale code of a given attribute; channel 1 is noise."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.conv1 = nn.Identity()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.conv1(x).mean((2, 3)))


def test_label_probe_reads_the_label_when_it_is_there_and_not_otherwise():
    """`label_probe` was 0.48 for every method: the probe returned the majority rate whatever the
    features held. A label planted at a small scale must be found; an absent one must not."""
    g = torch.Generator().manual_seed(0)
    n = 400
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, 4, 4, generator=g)
    x[:, 0] += (2 * y - 1).float()[:, None, None] * 3
    for scale in (1e-3, 1.0):
        m = _Planted(scale)
        assert shortcut_probe(m, "conv1", x * scale, y) > 0.95
    noise = torch.randn(n, 2, 4, 4, generator=g)
    assert 0.35 < shortcut_probe(_Planted(1.0), "conv1", noise, y) < 0.65


class _SNAbove(nn.Module):
    def __init__(self, new_style: bool):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if new_style else nn.utils.spectral_norm
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = sn(nn.Conv2d(4, 4, 3, padding=1))
        self.fc = sn(nn.Linear(4 * 64, 2))

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


@pytest.mark.parametrize("new_style", [True, False], ids=["parametrizations", "legacy"])
@pytest.mark.parametrize("efficient", [True, False])
def test_forget_and_identify_steps_leave_spectral_norm_buffers_alone(new_style, efficient):
    torch.manual_seed(0)
    net = _SNAbove(new_style)
    s = FeatureSieve(net, "conv1", 2, (2, 8, 8), aux_head="linear", efficient=efficient)
    x, y = torch.rand(8, 2, 8, 8), torch.randint(0, 2, (8,))
    before = {k: v.clone() for k, v in net.named_buffers()}
    assert before, "the spectral-norm layers must have buffers"
    s.identify_step(x, y)
    s.forget_step(x, y)
    for k, v in net.named_buffers():
        assert torch.equal(v, before[k]), f"{k} changed by an aux/forget step"
    s.main_step(x, y)
    assert any(not torch.equal(v, before[k]) for k, v in net.named_buffers())  # the main step does update


def test_sieve_without_forgetting_equals_erm_on_a_spectral_norm_model():
    train = torch.utils.data.TensorDataset(
        torch.rand(96, 2, 8, 8),
        torch.randint(0, 2, (96,)),
        torch.zeros(96, dtype=torch.long),
        torch.arange(96),
    )
    torch.manual_seed(1)
    a = _SNAbove(True)
    b = copy.deepcopy(a)
    fit(ERM(a, 2, lr=0.05), train, 6, batch_size=32, selector="last", progress=False)
    sv = FeatureSieve(b, "conv1", 2, (2, 8, 8), aux_head="linear", forget_every=0, lr=0.05, efficient=False)
    fit(sv, train, 6, batch_size=32, selector="last", progress=False)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


class _RootParams(nn.Module):
    """Root-level parameters: `pre` is consumed before the sieve layer, `post` and `temp` after it."""

    def __init__(self):
        super().__init__()
        self.pre = nn.Parameter(torch.zeros(1, 2, 1, 1))
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.post = nn.Parameter(torch.ones(1, 4, 1, 1))
        self.fc = nn.Linear(4 * 64, 2)
        self.temp = nn.Parameter(torch.ones(()))

    def forward(self, x):
        h = torch.relu(self.conv1(x + self.pre))
        h = torch.relu(self.conv2(h * self.post))
        return self.fc(h.flatten(1)) / self.temp


def test_root_level_parameters_used_after_the_sieve_layer_are_not_lower():
    m = _RootParams()
    got = {id(p) for p in lower_parameters(m, "conv1", torch.zeros(2, 2, 8, 8))}
    assert got == {id(m.pre), id(m.conv1.weight), id(m.conv1.bias)}
    s = FeatureSieve(m, "conv1", 2, (2, 8, 8), aux_head="linear", forget_lr=0.5)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    s.forget_step(torch.rand(8, 2, 8, 8), torch.randint(0, 2, (8,)))
    changed = {n for n, p in m.named_parameters() if not torch.equal(before[n], p)}
    assert changed <= {"pre", "conv1.weight", "conv1.bias"} and "conv1.weight" in changed


class _ConstModel(nn.Module):
    """Predicts class 1 for every input."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor([0.0, 1.0]))

    def forward(self, x):
        return self.b.expand(len(x), 2)


def test_jtt_error_set_is_exactly_the_misclassified_examples():
    y = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1])
    train = torch.utils.data.TensorDataset(
        torch.zeros(8, 1), y, torch.zeros(8, dtype=torch.long), torch.arange(8)
    )
    assert error_set(_ConstModel(), train).tolist() == [0, 3, 4, 6]  # argmax 1 != y


def test_jtt_upsamples_only_the_stage1_errors(color_digits, monkeypatch):
    import feature_sieve.jtt as jtt

    train = torch.utils.data.TensorDataset(*(t[:192] for t in color_digits["train"].tensors))
    seen = {}
    real_fit = jtt.fit

    def spy(method, data, steps, sample_weights=None, **kw):
        if sample_weights is not None:
            seen["w"] = sample_weights.clone()
        return real_fit(method, data, steps, sample_weights=sample_weights, **kw)

    monkeypatch.setattr(jtt, "fit", spy)
    torch.manual_seed(0)
    method, _, errors = run_jtt(
        SmallCNN(2, 2, 4),
        2,
        train,
        steps=2,
        identify_steps=4,
        upweight=7,
        erm_kwargs={"lr": 0.05},
        batch_size=32,
        selector="last",
        progress=False,
    )
    # recompute stage 1 independently: same init, same batches
    torch.manual_seed(0)
    m1 = SmallCNN(2, 2, 4)
    fit(ERM(m1, 2, lr=0.05), train, 4, batch_size=32, selector="last", progress=False)
    with torch.no_grad():
        wrong = torch.nonzero(m1(train.tensors[0]).argmax(1) != train.tensors[1]).flatten()
    assert 0 < len(wrong) < len(train)
    assert errors.tolist() == wrong.tolist()
    expected = torch.ones(len(train), dtype=torch.float64)
    expected[wrong] = 7.0
    assert torch.equal(seen["w"], expected)
