"""Tracking metrics with the official OPE / GOT-10k definitions (DESIGN.md §2, pitfall 13).

Boxes are (x, y, w, h) in continuous pixel coordinates (no ``+1``/``-1``); IoU of the areas.

* **Success / precision (OTB / LaSOT one-pass evaluation, got10k toolkit ``ExperimentOTB``)**: per
  sequence, the first predicted box is the given init box (``boxes[0] = anno[0]``), the success curve is
  ``mean(iou > t)`` over ``t in linspace(0, 1, 21)`` (strict ``>``), the precision curve is
  ``mean(centre_error <= t)`` over ``t in 0, 1, ..., 50`` px and the normalised-precision curve uses
  the centre error divided by the ground-truth w / h over ``t in linspace(0, 0.5, 51)``. Curves are
  averaged over sequences; AUC = mean of the success curve (a perfect tracker scores 20/21 ~= 0.952),
  precision@k px = the precision curve at k.
* **AO / SR (GOT-10k)**: IoUs of frames 1.. pooled over all sequences; AO = mean IoU, SR_t = fraction
  with IoU > t.
* Frames marked not valid (target absent, GOT-10k ``cover == 0``, LaSOT full occlusion / out of view,
  or a ground-truth box without positive size) are left out of every metric, as the GOT-10k toolkit
  does for ``cover == 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLDS = np.linspace(0, 1, 21)
PRECISION_PX = np.arange(0, 51)
NORM_THRESHOLDS = np.linspace(0, 0.5, 51)


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


def normalized_center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Centre error with each axis divided by the ground-truth width / height (LaSOT's P_norm)."""
    a, b = np.asarray(pred, float).reshape(-1, 4), np.asarray(gt, float).reshape(-1, 4)
    wh = np.maximum(b[:, 2:], 1e-12)
    d = (a[:, :2] + a[:, 2:] / 2 - b[:, :2] - b[:, 2:] / 2) / wh
    return np.hypot(d[:, 0], d[:, 1])


def success_curve(ious: np.ndarray) -> np.ndarray:
    return np.array([(ious > t).mean() for t in THRESHOLDS])


def precision_curve(errors: np.ndarray, thresholds: np.ndarray = PRECISION_PX) -> np.ndarray:
    return np.array([(errors <= t).mean() for t in thresholds])


def _valid(g: np.ndarray, v: np.ndarray | None) -> np.ndarray:
    ok = np.isfinite(g).all(1) & (g[:, 2] > 0) & (g[:, 3] > 0)
    if v is not None:
        v = np.asarray(v, bool)
        if v.shape != ok.shape:
            raise ValueError(f"valid has shape {v.shape}, expected {ok.shape}")
        ok &= v
    return ok


def tracking_metrics(
    pred: Sequence[np.ndarray],
    gt: Sequence[np.ndarray],
    precision_px: float = 2.0,
    valid: Sequence[np.ndarray | None] | None = None,
) -> dict:
    """Official OPE metrics over sequences (module docstring); each array is (T, 4) xywh.

    ``precision`` is the precision at ``precision_px`` (default 2 px: 20 px, the benchmark convention on
    real videos, is saturated on 96-px frames); ``precision_{2,5,20}px`` are always reported too.
    ``valid``: optional per-sequence boolean masks of frames to score.
    """
    if len(pred) != len(gt) or not pred:
        raise ValueError("pred and gt must be equally long, non-empty lists of (T, 4) arrays")
    if valid is not None and len(valid) != len(gt):
        raise ValueError("valid must have one mask (or None) per sequence")
    if precision_px not in PRECISION_PX:
        raise ValueError(f"precision_px must be an integer 0..50 (the official curve), got {precision_px}")
    succ, prec, nprec, pooled = [], [], [], []
    for k, (p, g) in enumerate(zip(pred, gt)):
        p, g = np.array(p, float).reshape(-1, 4), np.asarray(g, float).reshape(-1, 4)
        if len(p) != len(g):
            raise ValueError(
                f"sequence {k}: {len(p)} predicted boxes for {len(g)} ground-truth boxes "
                "(a sequence without full ground truth, e.g. GOT-10k test, cannot be scored locally)"
            )
        p[0] = g[0]  # the init box is given (got10k toolkit: boxes[0] = anno[0])
        ok = _valid(g, None if valid is None else valid[k])
        if not ok.any():
            raise ValueError(f"sequence {k}: no frame with a valid ground-truth box")
        ious = iou(p, g)[ok]
        succ.append(success_curve(ious))
        prec.append(precision_curve(center_error(p, g)[ok]))
        nprec.append(precision_curve(normalized_center_error(p, g)[ok], NORM_THRESHOLDS))
        pooled.append(iou(p[1:], g[1:])[ok[1:]])
    s, pr, npr = np.mean(succ, 0), np.mean(prec, 0), np.mean(nprec, 0)
    ious_all = np.concatenate(pooled) if any(len(x) for x in pooled) else np.zeros(1)
    return {
        "auc": float(s.mean()),
        "precision": float(pr[int(precision_px)]),
        "precision_2px": float(pr[2]),
        "precision_5px": float(pr[5]),
        "precision_20px": float(pr[20]),
        "norm_precision": float(npr[20]),
        "ao": float(ious_all.mean()),
        "sr50": float((ious_all > 0.5).mean()),
        "sr75": float((ious_all > 0.75).mean()),
    }
