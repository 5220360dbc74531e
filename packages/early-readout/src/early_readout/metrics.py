"""Group metrics of the student, via the shared definitions in `paperworks_shared.groups`.

One implementation for every debiasing package (DESIGN.md §7): worst-group accuracy, the empirical
average, the train-proportion-weighted average and the mean-group ("unbiased", the official model
selection) accuracy.
"""

from __future__ import annotations

import math

import torch

from paperworks_shared.groups import GroupMetrics


def group_report(
    pred: torch.Tensor,
    y: torch.Tensor,
    g: torch.Tensor,
    n_groups: int | None = None,
    train_group_counts=None,
) -> dict[str, float]:
    """avg / mean_group / worst_group_acc accuracy, plus ``weighted_avg`` (the train-proportion-weighted
    average) when ``train_group_counts`` is given.

    ``weighted_avg`` needs the training set's group sizes; without them it is left out of the report
    (never reported as NaN). Without group ids (all ``g < 0``) only the plain average exists, and the
    group entries repeat it.
    """
    if (g < 0).all():
        acc = float((pred == y).float().mean()) if len(y) else math.nan
        return {"avg": acc, "mean_group": acc, "worst_group_acc": acc}
    if (g < 0).any():
        raise ValueError("some evaluation examples have a group id and some do not")
    if train_group_counts is not None:
        train_group_counts = torch.as_tensor(train_group_counts, dtype=torch.float64)
        n_groups = n_groups or len(train_group_counts)
        if len(train_group_counts) != n_groups:
            raise ValueError(
                f"train_group_counts has {len(train_group_counts)} entries for n_groups={n_groups}"
            )
    n_groups = n_groups or int(g.max()) + 1
    m = GroupMetrics(n_groups, train_group_counts).update(pred, y, g).compute()
    out = {"avg": m["avg_acc"], "mean_group": m["mean_group_acc"], "worst_group_acc": m["worst_group_acc"]}
    if train_group_counts is not None:
        out["weighted_avg"] = m["weighted_avg_acc"]
    return out
