"""Losses of the three updates (DESIGN.md §1.2) and the diagnostics' entropy.

The forget loss is the soft-label cross-entropy of the aux output against the uniform distribution,
``L_f = -(1/K) sum_k log softmax(z)_k`` per example (= KL(U || p) + log K), minimised (= log K, zero
gradient) exactly when the aux output is uniform; its gradient w.r.t. the logits is ``p_k - 1/K``.
It is computed from logits with ``log_softmax`` (never CE applied to probabilities: the double-softmax
bug of a third-party port, DESIGN.md pitfall 7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def forget_loss_uniform(aux_logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of CE(aux output, Uniform(K)); ``labels`` is ignored (SiFer uses none)."""
    return -F.log_softmax(aux_logits, dim=-1).mean(-1).mean()


def forget_loss_wrong_sign(aux_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The control (DESIGN.md §1.7): the "forget" step pulls the aux head *toward* the true labels (CE to y).

    It routes gradients exactly like the sieve but teaches the lower layers whatever the aux head reads,
    so any gain of the real sieve over this control is due to the uniform target, not the extra updates.
    """
    return F.cross_entropy(aux_logits, labels)


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of softmax(logits); log K for a uniform prediction."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()
