"""Per-example distillation loss (Hinton KD with an optional label term) and its weighted reduction.

Notes §1.2 (official ``loss.py::LossComputer.loss_kd``)::

    l_KD(i) = T^2 * KL(softmax(z_T/T) || softmax(z_S/T))      summed over classes
    l_CE(i) = CE(z_S, y)
    l(i)    = w_i * (kd_alpha * l_KD(i) + (1 - kd_alpha) * l_CE(i))

The official batch loss is the plain ``mean(w * l)`` (``normalize="none"``). Because the weights reach
~50, DESIGN.md §6.1 recommends per-batch normalisation ``w * B / sum(w)`` (``"batch"``, our default) or a
global one ``w / mean(w_all)`` (``"global"``). Weights are normalised *before* the mean, so with all
weights equal to 1 every mode returns exactly the plain KD mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NORMALIZE = ("none", "batch", "global")


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 3.0
) -> torch.Tensor:
    """Per-example ``T^2 * KL(p_T || p_S)`` at temperature T, shape (B,)."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ: teacher and student must have the same class count"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = temperature
    log_ps = F.log_softmax(student_logits / t, dim=1)
    log_pt = F.log_softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_ps, log_pt, reduction="none", log_target=True).sum(dim=1) * (t * t)


def distill_loss_per_example(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 3.0,
    kd_alpha: float = 1.0,
) -> torch.Tensor:
    """``kd_alpha * l_KD + (1 - kd_alpha) * l_CE`` per example (kd_alpha=1: pure KD, the official default)."""
    if not 0.0 <= kd_alpha <= 1.0:
        raise ValueError(f"kd_alpha must be in [0, 1], got {kd_alpha}")
    loss = kd_loss(student_logits, teacher_logits, temperature)
    if kd_alpha < 1.0:
        ce = F.cross_entropy(student_logits, targets.long(), reduction="none")
        loss = kd_alpha * loss + (1.0 - kd_alpha) * ce
    return loss


def normalize_weights(w: torch.Tensor, mode: str = "batch", global_mean: float | None = None) -> torch.Tensor:
    """Batch weights after normalisation: none (as is), batch (mean 1 in the batch), global (/ mean of all)."""
    if mode == "none":
        return w
    if mode == "batch":
        return w * (w.numel() / w.sum())
    if mode == "global":
        if global_mean is None or global_mean <= 0:
            raise ValueError("normalize='global' needs the positive mean of all training weights")
        return w / global_mean
    raise ValueError(f"unknown normalize mode {mode!r}; choose one of {NORMALIZE}")


def weighted_mean(per_example: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """``mean(w * l)``; ``w=None`` is the unweighted mean."""
    if w is None:
        return per_example.mean()
    if w.shape != per_example.shape:
        raise ValueError(
            f"weights {tuple(w.shape)} do not match per-example losses {tuple(per_example.shape)}"
        )
    return (w * per_example).mean()
