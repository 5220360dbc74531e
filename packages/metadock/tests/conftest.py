import warnings

import pytest
import torch

import metadock as md

warnings.filterwarnings("ignore", category=SyntaxWarning)


def tiny_dock(budget=0.5, hidden=4, img=8, seed=0, dtype=torch.float64, n_way=3, **kw):
    torch.manual_seed(seed)
    net = md.Conv4(in_channels=1, n_way=n_way, hidden=hidden, img_size=img).to(dtype)
    dock = md.MetaDOCK(net, budget=budget, **kw)
    with torch.no_grad():  # spread gate logits around 0 so some kernels are off and some flip
        for _, c in md.gates.gated_convs(dock):
            c.psi.copy_(0.05 * torch.randn_like(c.psi))
    return dock


def tiny_task(n_way=3, k=2, q=3, img=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    sx = torch.randn(n_way * k, 1, img, img, generator=g, dtype=dtype)
    qx = torch.randn(n_way * q, 1, img, img, generator=g, dtype=dtype)
    return md.Task(
        sx,
        torch.arange(n_way).repeat_interleave(k),
        qx,
        torch.arange(n_way).repeat_interleave(q),
        tuple(range(n_way)),
    )


@pytest.fixture
def dock():
    return tiny_dock()


@pytest.fixture
def task():
    return tiny_task()


@pytest.fixture
def make_dock():
    return tiny_dock


@pytest.fixture
def make_task():
    return tiny_task
