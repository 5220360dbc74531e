"""Linear warm-up then cosine decay: the one learning-rate schedule the LM trainers share
(paperworks_shared.train, qtt-longctx's sandbox model, v1-infer's PairRL warm start)."""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int = 0, floor: float = 0.1) -> float:
    """The multiplier of the base lr at `step`: (step+1)/warmup during warm-up, then cosine from 1 down
    to `floor` at `total_steps`, flat at `floor` afterwards."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    p = min(1.0, (step - warmup_steps) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, *, warmup_steps: int = 0, floor: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR with `warmup_cosine_factor`; call ``.step()`` once per optimizer step."""
    if int(total_steps) < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= int(warmup_steps) <= int(total_steps):
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine_factor(s, int(total_steps), int(warmup_steps), float(floor))
    )
