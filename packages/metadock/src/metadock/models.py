"""Conv4, the standard few-shot backbone, as in the official MetaDOCK code.

Four blocks of Conv2d(3x3, stride 2, padding 1) -> BatchNorm2d(transductive) -> ReLU, no max-pool,
then a linear classifier. BatchNorm never tracks running statistics: every task normalises with its
own batch (track_running_stats=False, as the official code), which torch.func.vmap also requires.
"""

from __future__ import annotations

import math

from torch import nn


def _out(size: int) -> int:
    for _ in range(4):
        size = math.floor((size + 2 - 3) / 2) + 1
    return size


class Conv4(nn.Module):
    def __init__(self, in_channels: int = 1, n_way: int = 5, hidden: int = 32, img_size: int = 28):
        super().__init__()
        if min(in_channels, n_way, hidden, img_size) < 1:
            raise ValueError("in_channels, n_way, hidden and img_size must be positive")
        self.config = dict(in_channels=in_channels, n_way=n_way, hidden=hidden, img_size=img_size)
        layers = []
        c = in_channels
        for _ in range(4):
            layers += [
                nn.Conv2d(c, hidden, 3, stride=2, padding=1),
                nn.BatchNorm2d(hidden, momentum=1.0, track_running_stats=False),
                nn.ReLU(),
            ]
            c = hidden
        self.features = nn.Sequential(*layers)
        s = _out(img_size)
        self.classifier = nn.Linear(hidden * s * s, n_way)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def make_transductive_bn(net: nn.Module) -> nn.Module:
    """Switch every BatchNorm of `net` to transductive mode (no running statistics), in place."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
    return net


def check_transductive_bn(net: nn.Module) -> None:
    bad = [
        n
        for n, m in net.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if bad:
        raise ValueError(
            f"BatchNorm layers {bad} track running statistics: they would leak statistics across tasks and "
            "cannot run under torch.func.vmap. Build them with track_running_stats=False or call "
            "metadock.make_transductive_bn(net) first."
        )
