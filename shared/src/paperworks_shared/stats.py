"""Verdicts computed from paired differences: holds / reversed / equivalent / underpowered.

Every headline comparison in a benchmark reports the paired difference (method - baseline, per seed),
its 95% t-interval, and one verdict word computed from those numbers, never written in advance:

- ``equivalent``: the whole interval lies inside ±delta (delta is fixed before the run);
- ``holds``: the interval lies above 0;
- ``reversed``: the interval lies below 0;
- ``underpowered``: none of the above; the record says how many seeds would be needed.

Equivalence is checked first: an interval that excludes 0 but sits inside ±delta is an effect too small
to matter, which is what the stated delta means. With fewer than two seeds there is no interval and the
verdict is ``underpowered``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

VERDICTS = ("holds", "reversed", "equivalent", "underpowered")


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t critical value (scipy when present, else a Cornish-Fisher approximation)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    q = 0.5 + level / 2
    try:
        from scipy.stats import t

        return float(t.ppf(q, df))
    except ImportError:  # Abramowitz & Stegun 26.7.5
        z = _normal_quantile(q)
        g1 = (z**3 + z) / 4
        g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
        g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
        return z + g1 / df + g2 / df**2 + g3 / df**3


def _normal_quantile(p: float) -> float:
    # Acklam's rational approximation is overkill here; bisection on erf is exact enough.
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass
class PairedVerdict:
    n: int
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    delta: float | None
    verdict: str
    seeds_needed: int | None

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self, digits: int = 3) -> str:
        if self.ci_low is None:
            return f"{self.verdict} (n={self.n}: no interval from one seed)"
        s = f"{self.mean:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}] over {self.n} seeds: {self.verdict}"
        if self.verdict == "equivalent":
            s += f" within ±{self.delta:g}"
        if self.verdict == "underpowered" and self.seeds_needed:
            s += f" (about {self.seeds_needed} seeds would decide it)"
        return s


def paired_verdict(
    diffs: Sequence[float], *, delta: float | None = None, level: float = 0.95
) -> PairedVerdict:
    """The verdict for per-seed paired differences (method - baseline); `delta` is the equivalence margin."""
    xs = [float(d) for d in diffs]
    if not xs:
        raise ValueError("paired_verdict needs at least one paired difference")
    if any(not math.isfinite(x) for x in xs):
        raise ValueError(f"paired differences must be finite, got {xs}")
    if delta is not None and not (delta > 0 and math.isfinite(delta)):
        raise ValueError(f"delta must be a positive finite number, got {delta}")
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return PairedVerdict(n, mean, None, None, None, delta, "underpowered", 3)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    if delta is not None and lo >= -delta and hi <= delta:
        verdict = "equivalent"
    elif lo > 0:
        verdict = "holds"
    elif hi < 0:
        verdict = "reversed"
    else:
        verdict = "underpowered"
    needed = None
    if verdict == "underpowered":
        needed = seeds_needed(mean, sd, delta=delta, level=level)
    return PairedVerdict(n, mean, sd, lo, hi, delta, verdict, needed)


def seeds_needed(
    mean: float, sd: float, *, delta: float | None = None, level: float = 0.95, cap: int = 10_000
) -> int | None:
    """Smallest n whose interval half-width would decide the question, if mean and sd stayed as measured.

    Deciding means excluding 0 (half-width < |mean|) or, with a margin, fitting inside ±delta
    (half-width < delta - |mean|); the easier of the two. None when neither is reachable."""
    if sd == 0:
        return 2
    targets = [abs(mean)]
    if delta is not None and delta > abs(mean):
        targets.append(delta - abs(mean))
    target = max(targets)
    if target <= 0:
        return None
    for n in range(2, cap + 1):
        if t_quantile(n - 1, level) * sd / math.sqrt(n) < target:
            return n
    return None


def compare(
    method: Sequence[float],
    baseline: Sequence[float],
    *,
    name: str,
    metric: str,
    delta: float,
    higher_is_better: bool = True,
    seeds: Sequence[int] | None = None,
) -> dict:
    """One headline comparison, paired by seed: the per-seed values, their differences, the interval and
    the verdict. Differences are oriented so that a positive number always means "method better"
    (method - baseline when higher is better, baseline - method otherwise). `delta` is the equivalence
    margin, fixed before the run. The dict goes into ``ctx.record(..., headlines=[...])``; the report
    recomputes the verdict from the stored values (see `check_headline`)."""
    m = [float(v) for v in method]
    b = [float(v) for v in baseline]
    if len(m) != len(b):
        raise ValueError(f"{name}: {len(m)} method values but {len(b)} baseline values (pair them by seed)")
    if seeds is not None and len(seeds) != len(m):
        raise ValueError(f"{name}: {len(seeds)} seeds for {len(m)} paired values")
    if any(not math.isfinite(v) for v in m + b):
        raise ValueError(f"{name}: {metric} values must be finite, got method={m} baseline={b}")
    sign = 1.0 if higher_is_better else -1.0
    diffs = [sign * (x - y) for x, y in zip(m, b)]
    v = paired_verdict(diffs, delta=delta)
    return {
        "comparison": name,
        "metric": metric,
        "higher_is_better": bool(higher_is_better),
        "n_seeds": v.n,
        "method_mean": sum(m) / len(m),
        "baseline_mean": sum(b) / len(b),
        "diff_mean": v.mean,
        "ci_low": v.ci_low,
        "ci_high": v.ci_high,
        "delta": delta,
        "verdict": v.verdict,
        "seeds_needed": v.seeds_needed,
        "seeds": list(seeds) if seeds is not None else list(range(len(m))),
        "method": m,
        "baseline": b,
    }


def check_headline(h: dict) -> str | None:
    """None when a stored headline's verdict follows from its stored per-seed values, else what is wrong."""
    try:
        again = compare(
            h["method"],
            h["baseline"],
            name=h["comparison"],
            metric=h["metric"],
            delta=h["delta"],
            higher_is_better=h.get("higher_is_better", True),
        )
    except (KeyError, TypeError, ValueError) as e:
        return f"cannot recompute ({e})"
    if again["verdict"] != h.get("verdict"):
        return f"stored verdict {h.get('verdict')!r} but the values give {again['verdict']!r}"
    if h.get("n_seeds") != again["n_seeds"]:
        return f"stored n_seeds {h.get('n_seeds')} but {again['n_seeds']} values"
    return None


def convergence(best_steps: Sequence[int | float], budget: int | float, *, tail: float = 0.1) -> dict:
    """Where each seed's best validation checkpoint fell in its training budget.

    An arm whose best step lies in the last `tail` fraction of the budget was probably still improving:
    `undertrained` is then true and the report flags it (issue 19.1: a baseline stopped early is unfair)."""
    if not best_steps:
        raise ValueError("convergence needs at least one best step")
    if not (budget > 0 and math.isfinite(budget)):
        raise ValueError(f"budget must be positive, got {budget}")
    if not 0 < tail < 1:
        raise ValueError(f"tail must be in (0, 1), got {tail}")
    steps = [float(s) for s in best_steps]
    if any(s < 0 or s > budget for s in steps):
        raise ValueError(f"best steps must lie in [0, {budget}], got {steps}")
    late = [s >= (1 - tail) * budget for s in steps]
    return {
        "budget": budget,
        "best_steps": [int(s) if s.is_integer() else s for s in steps],
        "tail": tail,
        "n_late": sum(late),
        "undertrained": any(late),
    }
