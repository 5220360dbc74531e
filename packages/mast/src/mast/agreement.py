"""Agreement statistics for binary multi-label annotation (DESIGN.md §1.3, §3.2, §6.12).

* `binary_metrics`: accuracy / precision / recall / F1 / Cohen's κ from a pooled 2x2 confusion matrix
  over (trace, mode) decisions -- the variant that reproduces the paper's Table 2 few-shot row.
* `cohen_kappa` (binary or multi-class, ints/bools/strings; equal to scikit-learn's
  `cohen_kappa_score` on every input it accepts, incl. linear/quadratic weights), `fleiss_kappa`, `krippendorff_alpha_binary`, `pairwise_mean_kappa`.
* `per_mode_table`, `bootstrap_ci` (resampling *traces*, not cells).

Degenerate-κ policy: when expected agreement p_e == 1 (both raters constant and identical), κ is 0/0.
Default ``degenerate="nan"`` returns NaN and warns (`DegenerateKappaWarning`); ``degenerate="one"``
returns 1.0 when the ratings are identical (agreement is perfect but uninformative). κ is also NaN (with
the same warning) when there are no items.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np


class DegenerateKappaWarning(RuntimeWarning):
    """κ is undefined (expected agreement is 1 or there are no items)."""


def _kappa_from(po: float, pe: float, identical: bool, degenerate: str) -> float:
    if degenerate not in ("nan", "one"):
        raise ValueError(f"degenerate must be 'nan' or 'one', got {degenerate!r}")
    if math.isclose(pe, 1.0):
        if degenerate == "one" and identical:
            return 1.0
        warnings.warn(
            "kappa undefined: expected agreement is 1 (both raters constant)",
            DegenerateKappaWarning,
            stacklevel=3,
        )
        return float("nan")
    return (po - pe) / (1.0 - pe)


def binary_metrics(tp: int, fp: int, fn: int, tn: int, degenerate: str = "nan") -> dict[str, float]:
    """Accuracy, precision, recall, F1 and Cohen's κ of a 2x2 table (positive = mode present).

    Table 2 few-shot row: ``binary_metrics(10, 2, 3, 69)`` -> 0.940 / 0.833 / 0.769 / 0.800, κ 0.765.
    """
    for name, v in (("tp", tp), ("fp", fp), ("fn", fn), ("tn", tn)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    n = tp + fp + fn + tn
    if n == 0:
        warnings.warn("no decisions: all metrics undefined", DegenerateKappaWarning, stacklevel=2)
        return {k: float("nan") for k in ("accuracy", "precision", "recall", "f1", "kappa")} | {"n": 0}
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    return {
        "accuracy": po,
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "kappa": _kappa_from(po, pe, fp == 0 and fn == 0, degenerate),
        "n": n,
    }


_BINARY = {0: False, 1: True}


def _binary(v, where: str) -> bool:
    """A 0/1 label (bool, int, integral float or numpy scalar); anything else is refused by name."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and math.isfinite(v)):
        if v in _BINARY:
            return _BINARY[int(v)]
    raise ValueError(
        f"{where}: binary label expected (0/1, True/False or None for missing), got {v!r}; "
        "use cohen_kappa() for multi-class or string labels"
    )


def confusion(reference: Sequence, predicted: Sequence) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of two equally long 0/1 sequences; pairs with a None on either side are skipped.

    Labels other than 0/1/True/False/None raise ValueError (a 3-class label is not silently "yes")."""
    if len(reference) != len(predicted):
        raise ValueError(f"length mismatch: {len(reference)} reference vs {len(predicted)} predicted labels")
    tp = fp = fn = tn = 0
    for i, (r, p) in enumerate(zip(reference, predicted)):
        if r is None or p is None:
            continue
        r, p = _binary(r, f"reference[{i}]"), _binary(p, f"predicted[{i}]")
        tp += r and p
        fp += (not r) and p
        fn += r and not p
        tn += (not r) and not p
    return tp, fp, fn, tn


def _category(v, where: str):
    """A class label as scikit-learn accepts it: bool/int/integral float -> int, str as is."""
    if isinstance(v, (bool, np.bool_, int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            raise ValueError(f"{where}: label {v!r} is not finite (use None for a missing label)")
        if v != int(v):
            raise ValueError(f"{where}: label {v!r} is continuous; kappa needs class labels")
        return int(v)
    if isinstance(v, (str, np.str_)):
        return str(v)
    raise ValueError(
        f"{where}: unsupported label type {type(v).__name__} ({v!r}); use ints, bools or strings"
    )


def cohen_kappa(
    a: Sequence,
    b: Sequence,
    degenerate: str = "nan",
    weights: str | None = None,
    labels: Sequence | None = None,
) -> float:
    """Cohen's κ for two raters' class labels (binary or multi-class; ints, bools or strings).

    Pairs with a None on either side are skipped (a missing rating). Matches
    ``sklearn.metrics.cohen_kappa_score(a, b, labels=labels, weights=weights)`` on every input that
    scikit-learn accepts; NaN/inf, continuous floats, labels mixing strings and numbers and other types
    raise ValueError naming the first bad label. ``weights`` is None, "linear" or "quadratic" (distances
    between positions in the sorted label list, as in scikit-learn). When the expected disagreement is 0
    (both raters constant and identical) κ follows ``degenerate`` (see the module docstring)."""
    if degenerate not in ("nan", "one"):
        raise ValueError(f"degenerate must be 'nan' or 'one', got {degenerate!r}")
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} reference vs {len(b)} predicted labels")
    xs, ys = [], []
    for i, (x, y) in enumerate(zip(a, b)):
        if x is None or y is None:
            continue
        xs.append(_category(x, f"a[{i}]"))
        ys.append(_category(y, f"b[{i}]"))
    if len({type(v) for v in xs + ys}) > 1:
        raise ValueError("labels mix strings and numbers; use one label type for both raters")
    if labels is None:
        cats = sorted(set(xs) | set(ys))
    else:
        cats = [_category(v, "labels") for v in labels]
        if not cats or len(set(cats)) != len(cats):
            raise ValueError("labels must be a non-empty list of distinct labels")
        if not set(cats) & set(xs):
            raise ValueError("none of the given labels occurs in the first rater's labels")
    index = {c: k for k, c in enumerate(cats)}
    k = len(cats)
    cm = np.zeros((k, k), dtype=float)
    for x, y in zip(xs, ys):
        if x in index and y in index:
            cm[index[x], index[y]] += 1
    n = cm.sum()
    if n == 0:
        warnings.warn("kappa undefined: no rated pairs", DegenerateKappaWarning, stacklevel=2)
        return float("nan")
    expected = np.outer(cm.sum(1), cm.sum(0)) / n
    if weights is None:
        w = 1.0 - np.eye(k)
    else:
        d = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :]).astype(float)
        w = d if weights == "linear" else d**2
    den = float((w * expected).sum())
    if den == 0.0:
        if degenerate == "one" and float((w * cm).sum()) == 0.0:
            return 1.0
        warnings.warn(
            "kappa undefined: expected disagreement is 0 (both raters constant)",
            DegenerateKappaWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(1.0 - (w * cm).sum() / den)


def fleiss_kappa(counts: Sequence[Sequence[int]] | np.ndarray) -> float:
    """Fleiss' κ from an items x categories count table (each row sums to the same number of raters)."""
    m = np.asarray(counts, dtype=float)
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError("counts must be a non-empty items x categories table")
    n_r = m.sum(1)
    if not np.allclose(n_r, n_r[0]) or n_r[0] < 2:
        raise ValueError(
            f"every item needs the same number (>=2) of ratings; got row sums {sorted(set(n_r))}"
        )
    n = n_r[0]
    p_j = m.sum(0) / m.sum()
    p_i = ((m * (m - 1)).sum(1)) / (n * (n - 1))
    pbar, pe = p_i.mean(), (p_j**2).sum()
    return _kappa_from(pbar, pe, bool(np.all(m.max(1) == n) and (p_j > 0).sum() == 1), "nan")


def fleiss_from_ratings(ratings: np.ndarray) -> float:
    """Fleiss' κ from a raters x items 0/1 matrix."""
    r = np.asarray(ratings)
    if r.ndim != 2 or not np.isin(r, (0, 1)).all():
        raise ValueError("ratings must be a raters x items matrix of 0/1 labels")
    r = r.astype(int)
    ones = r.sum(0)
    return fleiss_kappa(np.stack([r.shape[0] - ones, ones], 1))


def krippendorff_alpha_binary(ratings) -> float:
    """Krippendorff's α (nominal, binary) from a raters x items matrix; NaN/None = missing.

    Coincidence-matrix form: α = 1 - (n - 1) * o_01*2 / (2 * n_0 * n_1) over pairable values
    (items with >= 2 ratings).
    """
    r = np.array([[np.nan if v is None else float(v) for v in row] for row in ratings], dtype=float, ndmin=2)
    seen = r[~np.isnan(r)]
    if not np.isin(seen, (0.0, 1.0)).all():
        bad = seen[~np.isin(seen, (0.0, 1.0))][0]
        raise ValueError(f"binary alpha needs 0/1 ratings (None/NaN = missing), got {bad!r}")
    o = np.zeros((2, 2))
    for col in r.T:
        vals = col[~np.isnan(col)].astype(int)
        mu = len(vals)
        if mu < 2:
            continue
        c = np.bincount(vals, minlength=2)
        for i in range(2):
            for j in range(2):
                o[i, j] += (c[i] * (c[j] - (i == j))) / (mu - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    if n == 0:
        warnings.warn("alpha undefined: no pairable values", DegenerateKappaWarning, stacklevel=2)
        return float("nan")
    de = n_c[0] * n_c[1]
    if de == 0:
        warnings.warn("alpha undefined: only one value used", DegenerateKappaWarning, stacklevel=2)
        return float("nan")
    return 1.0 - (n - 1) * (o[0, 1] + o[1, 0]) / (2 * de)


def pairwise_mean_kappa(ratings, degenerate: str = "nan") -> float:
    """Mean Cohen's κ over all rater pairs (the paper's IAA averaging) of a raters x items matrix."""
    r = list(ratings)
    ks = [cohen_kappa(r[i], r[j], degenerate) for i in range(len(r)) for j in range(i + 1, len(r))]
    ks = [k for k in ks if not math.isnan(k)]
    return float(np.mean(ks)) if ks else float("nan")


def label_matrix(annotations, mode_ids: Sequence[str]) -> np.ndarray:
    """traces x modes float matrix (1/0, NaN for None) from dicts of labels or objects with ``.labels``."""
    rows = []
    for a in annotations:
        lab = a.labels if hasattr(a, "labels") else a
        rows.append(
            [np.nan if lab.get(m) is None else float(_binary(lab.get(m), f"label {m!r}")) for m in mode_ids]
        )
    return np.array(rows, dtype=float).reshape(len(rows), len(mode_ids))


def pooled_metrics(ref: np.ndarray, pred: np.ndarray, degenerate: str = "nan") -> dict[str, float]:
    """`binary_metrics` pooled over all (trace, mode) cells where both sides are labelled."""
    mask = ~(np.isnan(ref) | np.isnan(pred))
    r, p = ref[mask].astype(bool), pred[mask].astype(bool)
    return binary_metrics(
        int((r & p).sum()), int((~r & p).sum()), int((r & ~p).sum()), int((~r & ~p).sum()), degenerate
    )


def bootstrap_ci(
    ref: np.ndarray,
    pred: np.ndarray,
    stat: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of `stat(ref_rows, pred_rows)` resampling *traces* (rows) with replacement."""
    if ref.shape != pred.shape:
        raise ValueError(f"shape mismatch {ref.shape} vs {pred.shape}")
    rng = np.random.default_rng(seed)
    vals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateKappaWarning)
        for _ in range(n_boot):
            idx = rng.integers(0, ref.shape[0], ref.shape[0])
            v = stat(ref[idx], pred[idx])
            if not math.isnan(v):
                vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


def per_mode_table(
    ref: np.ndarray, pred: np.ndarray, mode_ids: Sequence[str], n_boot: int = 0, seed: int = 0
) -> list[dict]:
    """One row per mode: prevalence (reference), confusion counts, accuracy, κ (+ bootstrap CI)."""
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateKappaWarning)
        for j, m in enumerate(mode_ids):
            r, p = ref[:, j : j + 1], pred[:, j : j + 1]
            met = pooled_metrics(r, p)
            mask = ~(np.isnan(r) | np.isnan(p))
            row = {
                "mode": m,
                "n": int(mask.sum()),
                "prevalence": float(np.nanmean(r)) if mask.any() else float("nan"),
                "accuracy": met["accuracy"],
                "kappa": met["kappa"],
                "f1": met["f1"],
            }
            if n_boot:
                lo, hi = bootstrap_ci(r, p, lambda a, b: pooled_metrics(a, b)["kappa"], n_boot, seed)
                row |= {"kappa_lo": lo, "kappa_hi": hi}
            rows.append(row)
    return rows
