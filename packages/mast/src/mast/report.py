"""Failure distributions with the normalisation named (DESIGN.md §0.5, §6.9), co-occurrence, md/CSV/PNG.

* ``share``: a mode's flags as a percentage of *all* flags in the group (what the paper's per-mode
  percentages are: they sum to ~100 over the 14 modes);
* ``prevalence``: percentage of the group's traces in which the mode is flagged (MAD-1242: FM-2.6 in
  39.9% of traces while its share of flags is 16.2%);
* ``count``: raw flag counts.

Unparsed labels (``None``) are not flags; prevalence divides by the traces where the mode *was*
parsed, and the number of unparsed cells is reported (column ``unparsed``). Errored annotations are
excluded and counted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from .taxonomy import MAST_V3, TaxonomyVersion

NORMALIZATIONS = ("share", "prevalence", "count")


def _get(a, key):
    return getattr(a, key) if hasattr(a, key) else a.get(key, "")


def distribution(
    annotations: Sequence,
    by: str | Sequence[str] | None = None,
    normalize: str = "prevalence",
    taxonomy: TaxonomyVersion = MAST_V3,
) -> list[dict]:
    """One row per (group, mode): count, n_traces, unparsed and the value under `normalize` (in %)."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    keys = [by] if isinstance(by, str) else list(by or [])
    groups: dict[tuple, list] = {}
    for a in annotations:
        if _get(a, "error"):
            continue
        groups.setdefault(tuple(str(_get(a, k)) for k in keys), []).append(a)
    rows = []
    for g, anns in sorted(groups.items()):
        counts = {m: sum(_get(a, "labels").get(m) is True for a in anns) for m in taxonomy.ids}
        parsed = {m: sum(_get(a, "labels").get(m) is not None for a in anns) for m in taxonomy.ids}
        total = sum(counts.values())
        for m in taxonomy.ids:
            if normalize == "share":
                val = 100.0 * counts[m] / total if total else float("nan")
            elif normalize == "prevalence":
                val = 100.0 * counts[m] / parsed[m] if parsed[m] else float("nan")
            else:
                val = float(counts[m])
            row = dict(zip(keys, g))
            row |= {
                "mode": m,
                "category": taxonomy.category_of(m),
                "count": counts[m],
                "n_traces": len(anns),
                "unparsed": len(anns) - parsed[m],
                normalize: val,
            }
            rows.append(row)
    return rows


def category_totals(rows: list[dict], normalize: str, by: Sequence[str] = ()) -> list[dict]:
    """Sum a `distribution` table per category (meaningful for share and count; prevalence sums are
    'flags per 100 traces')."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = tuple(r[k] for k in by) + (r["category"],)
        d = out.setdefault(key, dict(zip(list(by) + ["category"], key)) | {"count": 0, normalize: 0.0})
        d["count"] += r["count"]
        d[normalize] += r[normalize]
    return list(out.values())


def cooccurrence(annotations: Sequence, taxonomy: TaxonomyVersion = MAST_V3) -> list[dict]:
    """Pairs of modes flagged together in the same trace (count, and Pearson r of the 0/1 indicators)."""
    import numpy as np

    ok = [a for a in annotations if not _get(a, "error")]
    x = np.array([[1.0 if _get(a, "labels").get(m) is True else 0.0 for m in taxonomy.ids] for a in ok])
    rows: list[dict] = []
    if len(ok) < 2:
        return rows
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(x.T)
    for i, mi in enumerate(taxonomy.ids):
        for j in range(i + 1, len(taxonomy.ids)):
            c = int((x[:, i] * x[:, j]).sum())
            if c:
                rows.append({"mode_a": mi, "mode_b": taxonomy.ids[j], "both": c, "r": float(r[i, j])})
    return sorted(rows, key=lambda d: -d["both"])


def to_markdown(rows: list[dict], digits: int = 1) -> str:
    if not rows:
        return "_(no rows)_\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def pivot(rows: list[dict], normalize: str, by: Sequence[str] = ()) -> list[dict]:
    """Wide table: one row per mode, one column per group."""
    out: dict[str, dict] = {}
    for r in rows:
        col = "/".join(str(r[k]) for k in by) or "all"
        out.setdefault(r["mode"], {"mode": r["mode"]})[col] = r[normalize]
    return list(out.values())


def plot(rows: list[dict], normalize: str, by: Sequence[str] = (), path=None, title: str = ""):
    """Grouped bar chart of a `distribution` table; saved to `path` (PNG) when given. Returns the figure."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    wide = pivot(rows, normalize, by)
    groups = [k for k in dict.fromkeys(k for r in wide for k in r) if k != "mode"]
    modes = [r["mode"] for r in wide]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(modes) * max(1, len(groups)) ** 0.5), 3.8))
    w = 0.8 / max(1, len(groups))
    for gi, g in enumerate(groups):
        ax.bar(np.arange(len(modes)) + gi * w, [r.get(g, 0) for r in wide], w, label=g)
    ax.set_xticks(np.arange(len(modes)) + 0.4 - w / 2, modes, rotation=45)
    unit = {"share": "% of all flags", "prevalence": "% of traces", "count": "flags"}[normalize]
    ax.set_ylabel(f"{normalize} ({unit})")
    ax.set_title(title or f"MAST failure distribution ({normalize})")
    if len(groups) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig
