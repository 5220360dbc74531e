"""Online Group DRO (Sagawa et al., ICLR 2020, Algorithm 1): the group-label oracle objective.

Shared by early-readout (its Group-DRO teacher) and feature-sieve (its oracle baseline). Keeps a
distribution q over groups, ``q_g <- q_g * exp(eta * loss_g)`` renormalised after every batch, and
returns ``sum_g q_g * loss_g``, where ``loss_g`` is the batch's mean loss over group g (0 when the
batch has no example of g, which then keeps its weight).
"""

from __future__ import annotations

import torch
from torch import nn


class GroupDROLoss(nn.Module):
    """``loss = dro(per_sample_loss, group)``; the group weights live in the buffer ``q`` (saved in state_dict)."""

    q: torch.Tensor

    def __init__(self, n_groups: int, eta: float = 0.01):
        super().__init__()
        if int(n_groups) != n_groups or int(n_groups) < 1:
            raise ValueError(f"n_groups must be a positive integer, got {n_groups!r}")
        if not (float(eta) > 0 and float(eta) < float("inf")):
            raise ValueError(f"eta must be a positive finite step size, got {eta!r}")
        self.n_groups = int(n_groups)
        self.eta = float(eta)
        self.register_buffer("q", torch.full((self.n_groups,), 1.0 / self.n_groups))

    def group_losses(self, per_sample_loss: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Mean loss per group over this batch (0 for a group with no example)."""
        if group is None:
            raise ValueError("Group DRO needs group labels for every batch (got group=None)")
        if per_sample_loss.dim() != 1 or group.shape != per_sample_loss.shape:
            raise ValueError(
                f"per-sample loss and group ids must be 1-D of the same length, got "
                f"{tuple(per_sample_loss.shape)} and {tuple(group.shape)}"
            )
        if group.numel() == 0:
            raise ValueError("Group DRO got an empty batch")
        if group.dtype.is_floating_point:
            raise ValueError(f"group ids must be integers, got dtype {group.dtype}")
        lo, hi = int(group.min()), int(group.max())
        if lo < 0 or hi >= self.n_groups:
            raise ValueError(f"group ids must be in [0, {self.n_groups}), got values in [{lo}, {hi}]")
        onehot = torch.nn.functional.one_hot(group.long(), self.n_groups).to(per_sample_loss.dtype)
        counts = onehot.sum(0)
        return (onehot * per_sample_loss[:, None]).sum(0) / counts.clamp_min(1)

    def forward(self, per_sample_loss: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        group_loss = self.group_losses(per_sample_loss, group)
        if self.training:  # the exponentiated-gradient step on q (eval leaves q alone)
            with torch.no_grad():
                q = self.q * torch.exp(self.eta * group_loss.detach().to(self.q.dtype))
                self.q.copy_(q / q.sum())
        return (group_loss * self.q.to(group_loss.dtype)).sum()
