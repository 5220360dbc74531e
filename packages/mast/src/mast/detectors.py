"""Deterministic detectors for structurally visible modes (beyond the paper).

They pre-screen traces and cross-check the judge; they are *heuristics* with stated rules, reported
beside the judge, never merged into its labels:

Units are turns (framework bookkeeping events such as step counters are skipped) or, for raw traces,
non-banner lines.

* FM-1.3 step repetition: the same speaker sends (near-)identical content >= `min_repeats` times, or a
  ``[previous line repeated Nx]`` marker with N >= `min_repeats` - 1 appears;
* FM-2.1 conversation reset: after >= 2 turns, a turn re-issues the opening task/message verbatim;
* FM-1.5 missing termination: no termination marker in the trace, and the trace ends in a repetition
  loop or a max-turn/round-limit message.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .traces.schema import Trace

TERMINATION_MARKERS = re.compile(
    r"\b(TERMINATE|SOLUTION_FOUND|<END>|FINAL ANSWER|Task completed|\\boxed\{|exit\(\)|<INFO> Finished)",
    re.IGNORECASE,
)
LIMIT_MARKERS = re.compile(
    r"(max(imum)?[_ ](turns|rounds|iterations|steps)|round limit|reached the limit)", re.IGNORECASE
)


@dataclass
class Finding:
    mode: str
    detector: str
    present: bool
    evidence: str = ""


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", s.lower())).strip()


# Decoration lines of raw logs ("---------- WebSurfer ----------", "=====", "#### Step ####"): structure,
# not agent content; every normal run repeats them.
_BANNER = re.compile(r"^\s*[-=*#~_<>|+]{3,}.*?[-=*#~_<>|+]{3,}\s*$|^\s*[-=*#~_<>|+]{3,}\s*$")


def _units(trace: Trace) -> list[tuple[str, str]]:
    """(speaker, content) units: the turns, minus framework bookkeeping events (``role="event"``: step
    counters, tool-dispatch notices), or the non-banner lines of a raw trace."""
    if trace.turns:
        return [(t.speaker, t.content) for t in trace.turns if t.role != "event"]
    return [("", line) for line in trace.raw.split("\n") if line.strip() and not _BANNER.match(line)]


def step_repetition(trace: Trace, min_repeats: int = 3, min_chars: int = 20) -> Finding:
    units = _units(trace)
    c = Counter((s, _norm(x)) for s, x in units if len(x.strip()) >= min_chars)
    top = c.most_common(1)
    if top and top[0][1] >= min_repeats:
        (spk, text), n = top[0]
        return Finding("1.3", "step_repetition", True, f"{spk or 'a line'} repeated {n}x: {text[:80]}")
    m = re.search(r"\[previous line repeated (\d+)x\]", trace.text())
    if m and int(m.group(1)) >= min_repeats - 1:
        return Finding("1.3", "step_repetition", True, m.group(0))
    return Finding("1.3", "step_repetition", False)


def conversation_reset(trace: Trace, min_chars: int = 20) -> Finding:
    units = _units(trace)
    if len(units) < 3:
        return Finding("2.1", "conversation_reset", False)
    opening = _norm(trace.task or units[0][1])
    if len(opening) < min_chars:
        return Finding("2.1", "conversation_reset", False)
    start = 0 if trace.task else 1
    for i, (spk, x) in enumerate(units[start:], start):
        if i >= 2 and _norm(x) == opening:
            return Finding(
                "2.1", "conversation_reset", True, f"turn {i} ({spk}) restates the opening message"
            )
    return Finding("2.1", "conversation_reset", False)


def missing_termination(trace: Trace, tail_turns: int = 6) -> Finding:
    text = trace.text()
    if TERMINATION_MARKERS.search(text):
        return Finding("1.5", "missing_termination", False)
    units = _units(trace)[-tail_turns:]
    tail = Counter(_norm(x) for _, x in units if x.strip())
    looping = bool(tail) and tail.most_common(1)[0][1] >= 3
    limited = bool(LIMIT_MARKERS.search("\n".join(x for _, x in units)))
    if looping or limited:
        why = "ends in a repetition loop" if looping else "ends at a turn/round limit"
        return Finding("1.5", "missing_termination", True, f"no termination marker; {why}")
    return Finding("1.5", "missing_termination", False)


DETECTORS = (step_repetition, conversation_reset, missing_termination)


def detect(trace: Trace) -> list[Finding]:
    """All detectors on one trace."""
    return [d(trace) for d in DETECTORS]


def cross_check(traces: Sequence[Trace], annotations: Sequence) -> list[dict]:
    """Per detector mode: how often detector and judge agree, and the disagreeing trace IDs."""
    by_id = {a.trace_id: a for a in annotations}
    rows: dict[str, dict] = {}
    for t in traces:
        a = by_id.get(t.trace_id)
        if a is None or a.error:
            continue
        for f in detect(t):
            r = rows.setdefault(
                f.mode,
                {
                    "mode": f.mode,
                    "detector": f.detector,
                    "n": 0,
                    "detector_yes": 0,
                    "judge_yes": 0,
                    "agree": 0,
                    "judge_unparsed": 0,
                    "disagree_ids": [],
                },
            )
            j = a.labels.get(f.mode)
            r["n"] += 1
            r["detector_yes"] += f.present
            if j is None:
                r["judge_unparsed"] += 1
                continue
            r["judge_yes"] += j
            if j == f.present:
                r["agree"] += 1
            elif len(r["disagree_ids"]) < 20:
                r["disagree_ids"].append(t.trace_id)
    return list(rows.values())
