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
