"""Readout analysis: do the early readout's mistakes fall in the minority groups? (DESIGN.md §1.7, §3.4 E1)

The paper's observation is that early readouts "automatically identify problem instances or groups
in the form of confident, incorrect predictions". Measured here as precision (share of the readout's
wrong set that is minority-group), recall (share of minority examples the readout gets wrong), the
base rate (minority share of the training set) and the same precision on the more confident half of
the wrong set.
"""

from __future__ import annotations

import math

import torch


def minority_groups(train_groups: torch.Tensor, n_groups: int | None = None) -> list[int]:
    """Groups smaller than a uniform share 1/G of the training set (the spurious-correlation minority)."""
    g = torch.as_tensor(train_groups).long()
    n_groups = n_groups or int(g.max()) + 1
    counts = torch.bincount(g, minlength=n_groups).float()
    return [k for k in range(n_groups) if 0 < counts[k] < len(g) / n_groups]


def readout_analysis(
    wrong: torch.Tensor, groups: torch.Tensor, minority: list[int], margins: torch.Tensor | None = None
) -> dict[str, float]:
    """Precision / recall of the wrong set for the minority groups (all tensors aligned by dataset index)."""
    wrong = torch.as_tensor(wrong).bool()
    groups = torch.as_tensor(groups).long()
    if wrong.shape != groups.shape:
        raise ValueError(f"wrong {tuple(wrong.shape)} and groups {tuple(groups.shape)} must align by index")
    if not minority:
        raise ValueError("no minority groups given: every group is at least 1/G of the data")
    is_min = torch.isin(groups, torch.tensor(minority))
    n_wrong = int(wrong.sum())
    out = {
        "n": len(wrong),
        "n_wrong": n_wrong,
        "frac_wrong": n_wrong / max(len(wrong), 1),
        "minority_base_rate": float(is_min.float().mean()),
        "minority_share_of_wrong": float(is_min[wrong].float().mean()) if n_wrong else math.nan,
        "minority_recall": float(wrong[is_min].float().mean()) if is_min.any() else math.nan,
    }
    if margins is not None and n_wrong >= 2:
        m = torch.as_tensor(margins)[wrong]
        conf = m >= m.median()
        out["minority_share_of_confident_wrong"] = float(is_min[wrong][conf].float().mean())
    return out
