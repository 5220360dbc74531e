"""Group-robustness metrics shared by the debiasing packages (feature-sieve, early-readout).

Definitions (one place, so every package reports the same numbers):

* per-group accuracy ``acc_g = correct_g / n_g`` (NaN for a group with no evaluation examples);
* **worst-group accuracy** (WGA) ``min_g acc_g`` over groups that have evaluation examples;
* **average accuracy, plain** ("empirical"): correct / total over all evaluation examples, i.e. weighted
  by the *evaluation* set's own group sizes;
* **average accuracy, group-weighted by training proportions** ("train-weighted", the Waterbirds
  convention of Sagawa et al. 2020): ``sum_g p_train(g) * acc_g``, with ``p_train`` renormalised over
  the groups present in the evaluation set. On a test set whose groups are balanced this differs from
  the plain average; on one drawn like the training set they coincide;
* **mean-group accuracy** ("adjusted accuracy", the official SiFer/SubpopBench model-selection rule):
  the unweighted mean of ``acc_g`` over present groups.

Groups may also overlap (CivilComments-style): pass a boolean ``N x G`` mask instead of group ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _predictions(preds) -> np.ndarray:
    """Class ids from ids (N,) or logits/probabilities (N, K)."""
    p = _np(preds)
    if p.ndim == 2:
        return p.argmax(axis=1)
    if p.ndim != 1:
        raise ValueError(f"predictions must be class ids (N,) or scores (N, K); got shape {p.shape}")
    return p.astype(np.int64)


def _masks(groups, masks, n: int, n_groups: int | None) -> np.ndarray:
    if (groups is None) == (masks is None):
        raise ValueError("pass exactly one of `groups` (ids, shape (N,)) or `masks` (bool, shape (N, G))")
    if masks is not None:
        m = _np(masks).astype(bool)
        if m.ndim != 2 or m.shape[0] != n:
            raise ValueError(f"masks must have shape (N={n}, G); got {m.shape}")
        if n_groups is not None and m.shape[1] != n_groups:
            raise ValueError(f"masks have {m.shape[1]} groups but n_groups={n_groups}")
        return m
    g = _np(groups).astype(np.int64)
    if g.shape != (n,):
        raise ValueError(f"groups must have shape ({n},) like the labels; got {g.shape}")
    if n_groups is None:
        n_groups = int(g.max()) + 1 if n else 0
    if n and (g.min() < 0 or g.max() >= n_groups):
        raise ValueError(f"group ids must be in [0, {n_groups}); got range [{g.min()}, {g.max()}]")
    return np.eye(n_groups, dtype=bool)[g] if n else np.zeros((0, n_groups), dtype=bool)


def group_accuracies(preds, labels, groups=None, n_groups: int | None = None, masks=None) -> np.ndarray:
    """Per-group accuracy (NaN where a group has no examples)."""
    y = _np(labels).astype(np.int64)
    p = _predictions(preds)
    if p.shape != y.shape:
        raise ValueError(f"predictions {p.shape} and labels {y.shape} differ in length")
    m = _masks(groups, masks, len(y), n_groups)
    correct = (p == y)[:, None] & m
    n = m.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, correct.sum(0) / np.maximum(n, 1), np.nan)


def worst_group_accuracy(preds, labels, groups=None, n_groups: int | None = None, masks=None) -> float:
    """``min_g acc_g`` over groups with examples."""
    acc = group_accuracies(preds, labels, groups, n_groups, masks)
    return float(np.nanmin(acc)) if np.isfinite(acc).any() else math.nan


class GroupMetrics:
    """Accumulates predictions by group and reports WGA, both average accuracies and a per-group table.

    >>> gm = GroupMetrics(n_groups=4, train_group_counts=[503, 26, 27, 522])
    >>> gm.update(logits, y, g)             # any number of batches
    >>> gm.compute()["worst_group_acc"]

    ``train_group_counts`` (or `from_train_groups`) defines the training proportions used by the
    group-weighted average; without it ``weighted_avg_acc`` is NaN.
    """

    def __init__(
        self,
        n_groups: int,
        train_group_counts: Sequence[float] | np.ndarray | None = None,
        group_names: Sequence[str] | None = None,
    ):
        if int(n_groups) < 1:
            raise ValueError(f"n_groups must be >= 1, got {n_groups!r}")
        self.n_groups = int(n_groups)
        if train_group_counts is not None:
            tc = np.asarray(_np(train_group_counts), dtype=np.float64)
            if tc.shape != (self.n_groups,) or (tc < 0).any() or tc.sum() <= 0:
                raise ValueError(
                    f"train_group_counts must be {self.n_groups} non-negative numbers with a positive sum; got {tc}"
                )
            self.train_counts: np.ndarray | None = tc
        else:
            self.train_counts = None
        if group_names is not None and len(group_names) != self.n_groups:
            raise ValueError(f"group_names has {len(group_names)} names for {self.n_groups} groups")
        self.group_names = list(group_names) if group_names is not None else [str(i) for i in range(n_groups)]
        self.reset()

    @classmethod
    def from_train_groups(cls, train_groups, n_groups: int, **kwargs) -> GroupMetrics:
        """Training proportions counted from the training set's group ids."""
        g = _np(train_groups).astype(np.int64)
        return cls(n_groups, train_group_counts=np.bincount(g, minlength=n_groups)[:n_groups], **kwargs)

    def reset(self) -> None:
        self.correct = np.zeros(self.n_groups, dtype=np.int64)
        self.count = np.zeros(self.n_groups, dtype=np.int64)
        self.total_correct = 0
        self.total = 0

    def update(self, preds, labels, groups=None, masks=None) -> GroupMetrics:
        y = _np(labels).astype(np.int64)
        p = _predictions(preds)
        if p.shape != y.shape:
            raise ValueError(f"predictions {p.shape} and labels {y.shape} differ in length")
        m = _masks(groups, masks, len(y), self.n_groups)
        ok = p == y
        self.correct += (ok[:, None] & m).sum(0)
        self.count += m.sum(0)
        self.total_correct += int(ok.sum())
        self.total += len(y)
        return self

    def group_acc(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.correct / np.maximum(self.count, 1), np.nan)

    def compute(self) -> dict[str, Any]:
        """avg_acc (plain), weighted_avg_acc (train proportions), mean_group_acc, worst_group_acc/_group."""
        acc = self.group_acc()
        present = self.count > 0
        out: dict[str, Any] = {
            "avg_acc": self.total_correct / self.total if self.total else math.nan,
            "mean_group_acc": float(acc[present].mean()) if present.any() else math.nan,
            "worst_group_acc": float(acc[present].min()) if present.any() else math.nan,
            "worst_group": int(np.flatnonzero(present)[np.argmin(acc[present])]) if present.any() else -1,
            "weighted_avg_acc": math.nan,
            "n": int(self.total),
        }
        if self.train_counts is not None:
            w = self.train_counts * present
            if w.sum() > 0:
                out["weighted_avg_acc"] = float((w / w.sum() * np.nan_to_num(acc)).sum())
        return out

    def table(self) -> list[dict[str, Any]]:
        """One row per group: name, n, correct, acc, and the training proportion when known."""
        acc = self.group_acc()
        rows = []
        tp = self.train_counts / self.train_counts.sum() if self.train_counts is not None else None
        for k in range(self.n_groups):
            row = {
                "group": self.group_names[k],
                "n": int(self.count[k]),
                "correct": int(self.correct[k]),
                "acc": float(acc[k]),
            }
            if tp is not None:
                row["train_frac"] = float(tp[k])
            rows.append(row)
        return rows


def compute_group_metrics(
    preds, labels, groups=None, n_groups: int | None = None, train_group_counts=None, masks=None
) -> dict[str, Any]:
    """One-shot `GroupMetrics(...).update(...).compute()`."""
    if n_groups is None:
        n_groups = _np(masks).shape[1] if masks is not None else int(_np(groups).max()) + 1
    return GroupMetrics(n_groups, train_group_counts).update(preds, labels, groups, masks).compute()
