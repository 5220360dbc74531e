"""Tiny synthetic fixtures shared by the tests (no dataset needed)."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class IdentityStudent(nn.Module):
    """layer1 = identity, so the readout sees exactly x (lets tests compute readout outputs by hand)."""

    def __init__(self, d: int = 2, num_classes: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.layer1 = nn.Identity()
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):
        return self.fc(self.layer1(x))


class FixedHead(nn.Module):
    """A readout head with fixed weights (used with readout_lr=0 so training leaves it unchanged)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(weight)

    def forward(self, f):
        return self.lin(f)


def planted_data(n: int = 200, n_planted: int = 20, seed: int = 0):
    """2-D points whose label follows sign(x0) except on a planted set whose labels are flipped."""
    g = torch.Generator().manual_seed(seed)
    easy = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) * 0.3
    x[:, 0] += easy.float() * 4 - 2
    planted = torch.randperm(n, generator=g)[:n_planted].sort().values
    y = easy.clone()
    y[planted] = 1 - y[planted]
    grp = 2 * y + easy
    return x, y, grp, planted


def loader(x, y, grp, batch_size=32, shuffle=True, seed=0):
    ds = TensorDataset(x, y, grp, torch.arange(len(y)))
    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed)
    )
