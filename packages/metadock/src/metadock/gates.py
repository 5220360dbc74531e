"""Kernel gates: one logit psi per (out, in) 2-D conv kernel, binarised with a straight-through estimator.

Paper Sec. 3 / official `models/layers.py`: m = Binarize(sigmoid(beta * psi)); forward 1[psi > 0],
backward d m / d psi := beta * sigmoid'(beta * psi).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

MASK_MODES = ("ste", "hard", "off")


class BinarizeSTE(torch.autograd.Function):
    """Forward: exact {0, 1} = 1[sigmoid(beta psi) > 0.5]; backward: beta * sigmoid'(beta psi). vmap-safe."""

    generate_vmap_rule = True

    @staticmethod
    def forward(psi, beta):
        return (psi > 0).to(psi.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        psi, beta = inputs
        ctx.save_for_backward(psi)
        ctx.beta = beta

    @staticmethod
    def backward(ctx, grad):
        (psi,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.beta * psi)
        return grad * ctx.beta * s * (1 - s), None


def binarize_ste(psi: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    return BinarizeSTE.apply(psi, beta)


class GatedConv2d(nn.Module):
    """A Conv2d whose kernels are multiplied by binary gates (per kernel or per filter).

    `mode` is "ste" (gates with straight-through gradient), "hard" (constant 1[psi>0], no gradient
    to psi) or "off" (dense, gates ignored: dense pretraining).
    """

    def __init__(
        self, conv: nn.Conv2d, granularity: str = "kernel", init_scale: float = 0.01, beta: float = 1.0
    ):
        super().__init__()
        if conv.groups != 1:
            raise ValueError(f"grouped convolutions (groups={conv.groups}) are not supported by kernel gates")
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.beta = beta
        self.granularity = granularity
        shape = (conv.out_channels, conv.in_channels) if granularity == "kernel" else (conv.out_channels, 1)
        # psi = 0.01 * U(0, 1): every kernel starts active (official init).
        self.psi = nn.Parameter(init_scale * torch.rand(shape, dtype=conv.weight.dtype))
        self.mode = "ste"

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    def mask(self) -> torch.Tensor:
        """The (out, in) or (out, 1) gate values used by the current mode."""
        if self.mode == "ste":
            return binarize_ste(self.psi, self.beta)
        if self.mode == "hard":
            return (self.psi.detach() > 0).to(self.weight.dtype)
        return torch.ones_like(self.psi)

    def kernel_mask(self) -> torch.Tensor:
        """Hard 0/1 mask per (out, in) kernel, whatever the granularity."""
        m = (self.psi.detach() > 0).to(self.weight.dtype)
        return m.expand(self.out_channels, self.in_channels)

    def forward(self, x):
        w = self.weight if self.mode == "off" else self.weight * self.mask()[:, :, None, None]
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation)


def gated_convs(module: nn.Module) -> list[tuple[str, GatedConv2d]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, GatedConv2d)]


@contextlib.contextmanager
def mask_mode(module: nn.Module, mode: str):
    """Temporarily put every gated conv of `module` in `mode` ("ste" | "hard" | "off")."""
    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask mode {mode!r}; choose one of {MASK_MODES}")
    convs = gated_convs(module)
    old = [c.mode for _, c in convs]
    for _, c in convs:
        c.mode = mode
    try:
        yield module
    finally:
        for (_, c), m in zip(convs, old):
            c.mode = m
