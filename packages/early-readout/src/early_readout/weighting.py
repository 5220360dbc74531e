"""Readout confidence margins and the paper's per-example weight formulas.

Notes §1.4 / §1.8. The released code (HEAD 2f6583a, ``train.py::reweigh_aux``) sets, for every training
example the early readout misclassifies, ``w_i = exp(beta * m_i ** alpha)`` where ``m_i = |p0 - p1|``;
the Aug-2023 code used ``w_i = alpha * (exp(beta * m_i) - 1) + 1``. Both are exposed here. The binary
margin is generalised to multi-class as top-1 minus top-2 probability (reduces to |p0 - p1| for two
classes); ``"pred_minus_true"`` (confidence in the wrong class over the true class) is the alternative.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MARGINS = ("top2", "pred_minus_true")
WEIGHT_FNS = ("exp_pow", "affine_exp")

#: (alpha, beta) defaults per formula: CUB/Waterbirds values of the respective code versions.
DEFAULT_ALPHA_BETA = {"exp_pow": (0.05, 4.0), "affine_exp": (4.0, 5.0)}


def margin(probs: torch.Tensor, targets: torch.Tensor | None = None, kind: str = "top2") -> torch.Tensor:
    """Confidence margin of each row of ``probs`` (N, C), in [0, 1].

    ``top2``: p_(1) - p_(2), the gap between the two most probable classes (|p0 - p1| for C = 2).
    ``pred_minus_true``: p_pred - p_y, how much more probability the predicted class has than the true
    one (0 for correct predictions); needs ``targets``.
    """
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C>=2), got {tuple(probs.shape)}")
    if kind == "top2":
        top = probs.topk(2, dim=1).values
        return top[:, 0] - top[:, 1]
    if kind == "pred_minus_true":
        if targets is None:
            raise ValueError("margin kind 'pred_minus_true' needs the targets")
        if targets.shape != probs.shape[:1]:
            raise ValueError(
                f"targets shape {tuple(targets.shape)} does not match probs {tuple(probs.shape)}"
            )
        return probs.max(dim=1).values - probs.gather(1, targets.long()[:, None]).squeeze(1)
    raise ValueError(f"unknown margin kind {kind!r}; choose one of {MARGINS}")


def exp_pow_weights(m: torch.Tensor, alpha: float = 0.05, beta: float = 4.0) -> torch.Tensor:
    """Final-code formula ``exp(beta * m ** alpha)`` (DESIGN.md §1.4). With alpha≈0 this is ~e^beta for any m>0."""
    if alpha <= 0:
        raise ValueError(f"exp_pow needs alpha > 0, got {alpha}")
    return torch.exp(beta * m.clamp(0.0, 1.0) ** alpha)


def affine_exp_weights(m: torch.Tensor, alpha: float = 4.0, beta: float = 5.0) -> torch.Tensor:
    """Aug-2023 formula ``alpha * (exp(beta * m) - 1) + 1`` (DESIGN.md §1.4, [HIST]); strongly margin-dependent."""
    return alpha * (torch.exp(beta * m.clamp(0.0, 1.0)) - 1.0) + 1.0


def get_weight_fn(
    weight_fn: str | Callable, alpha: float | None = None, beta: float | None = None
) -> Callable:
    """A ``margins -> weights`` callable: a formula name with its (alpha, beta) or a user callable."""
    if callable(weight_fn):
        return weight_fn
    if weight_fn not in WEIGHT_FNS:
        raise ValueError(f"unknown weight_fn {weight_fn!r}; choose one of {WEIGHT_FNS} or pass a callable")
    a0, b0 = DEFAULT_ALPHA_BETA[weight_fn]
    a = a0 if alpha is None else float(alpha)
    b = b0 if beta is None else float(beta)
    fn = exp_pow_weights if weight_fn == "exp_pow" else affine_exp_weights
    return lambda m: fn(m, a, b)
