"""DAPO-style policy loss and advantages for PairRL (paper Table 1: clip 0.2/0.28, token-mean, no KL,
no std-normalisation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def token_mean_clipped_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
) -> torch.Tensor:
    """−Σ_t min(ρ_t A, clip(ρ_t, 1−ε_low, 1+ε_high) A) · mask / Σ mask, with ρ_t = exp(logp − old_logp).

    Shapes: logp, old_logp, mask [B, T]; adv [B] (per sequence, broadcast over tokens) or [B, T].
    """
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(
            f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, mask {tuple(mask.shape)} differ"
        )
    if adv.dim() == 1:
        adv = adv[:, None].expand_as(logp)
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    obj = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv)
    return -(obj * mask).sum() / mask.sum().clamp_min(1.0)


def group_advantages(rewards: Sequence[float], groups: Sequence[int], std_norm: bool = False) -> torch.Tensor:
    """A_i = r_i − mean of its group (Dr.GRPO, no std-normalisation unless ``std_norm``)."""
    r = torch.as_tensor(rewards, dtype=torch.float32)
    g = torch.as_tensor(groups)
    adv = torch.empty_like(r)
    for gid in g.unique():
        m = g == gid
        a = r[m] - r[m].mean()
        if std_norm and m.sum() > 1:
            a = a / (r[m].std() + 1e-6)
        adv[m] = a
    return adv
