"""Tracking metrics under one pinned convention (notes §2, pitfall 13).

Convention: boxes are (x, y, w, h) in continuous pixel coordinates (no ``+1``/``-1``), IoU of the
areas; success thresholds ``linspace(0, 1, 21)`` with strict ``>`` (got10k toolkit / pytracking),
AUC = mean of the success curve, so a perfect tracker scores 20/21 ~= 0.952. Precision: centre
error ``<=`` t pixels (reported at 5 px for 96-px frames); AO = mean IoU; SR_t = fraction IoU > t.
Frame 0 (the given init box) is excluded from every metric.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.linspace(0, 1, 21)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def center_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    return np.hypot(
        a[:, 0] + a[:, 2] / 2 - b[:, 0] - b[:, 2] / 2, a[:, 1] + a[:, 3] / 2 - b[:, 1] - b[:, 3] / 2
    )


def success_curve(ious: np.ndarray) -> np.ndarray:
    return np.array([(ious > t).mean() for t in THRESHOLDS])


def tracking_metrics(pred: list[np.ndarray], gt: list[np.ndarray], precision_px: float = 5.0) -> dict:
    """Pooled metrics over sequences; each array is (T, 4) xywh, frame 0 is skipped."""
    if len(pred) != len(gt) or not pred:
        raise ValueError("pred and gt must be equally long, non-empty lists of (T, 4) arrays")
    ious = np.concatenate([iou(p[1:], g[1:]) for p, g in zip(pred, gt)])
    errs = np.concatenate([center_error(p[1:], g[1:]) for p, g in zip(pred, gt)])
    curve = success_curve(ious)
    return {
        "auc": float(curve.mean()),
        "precision": float((errs <= precision_px).mean()),
        "ao": float(ious.mean()),
        "sr50": float((ious > 0.5).mean()),
        "sr75": float((ious > 0.75).mean()),
    }
