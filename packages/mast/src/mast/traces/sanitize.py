"""Treat traces as untrusted input: strip label/gold-answer fields, redact secrets, collapse noise.

The official pipeline kept AG2's ``other_data`` (gold answer and ``correct``) in the judged text and
dropped only ``note`` (DESIGN.md §0.6, §6.4); here leak fields are removed by default, recursively,
with an explicit ``keep_fields`` escape hatch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from .schema import Trace, Turn

# Keys whose values reveal the reference answer, the outcome or a human label (DESIGN.md §6.4).
LEAK_FIELDS = frozenset(
    {
        "other_data",
        "correct",
        "is_correct",
        "answer",
        "given",
        "gold",
        "gold_answer",
        "expected_answer",
        "expected_output",
        "ground_truth",
        "reference_answer",
        "seed_solution",
        "seed_answer",
        "solution",
        "note",
        "notes",
        "label",
        "labels",
        "mast_annotation",
        "annotations",
        "human_annotation",
        "score",
        "success",
        "resolved",
        "reward",
    }
)

# In free text only *quoted* keys of dict dumps are treated as leaks (`"correct": false`, `'answer': '42'`):
# an agent writing "the answer: 42" is trace content, not a label.
TEXT_LEAK_FIELDS = frozenset(
    {
        "correct",
        "is_correct",
        "answer",
        "given",
        "gold",
        "gold_answer",
        "expected_answer",
        "ground_truth",
        "reference_answer",
        "seed_solution",
        "seed_answer",
        "note",
        "mast_annotation",
        "human_annotation",
    }
)
_LEAK_KEY_ALT = "|".join(sorted((re.escape(k) for k in TEXT_LEAK_FIELDS), key=len, reverse=True))
_LEAK_TEXT_RE = re.compile(
    rf"""(["'])({_LEAK_KEY_ALT})\1\s*:\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,}}\]]+)""",
    re.IGNORECASE,
)

# Secret patterns (DESIGN.md §6.14): API keys, bearer tokens, passwords/tokens in key=value or JSON form.
_SECRET_RES = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bhf_[A-Za-z0-9]{20,}\b"),
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._\-]{12,}"),
    re.compile(
        r"""(?i)(["']?\b(?:password|passwd|pwd|api[_-]?key|access[_-]?token|secret|token)\b["']?\s*[:=]\s*)"""
        r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,}\]]+)"""
    ),
]
REDACTED = "[REDACTED]"

# Environment noise that carries no MAS behaviour (Magentic pip/docker installs, ChatDev flask probe).
_NOISE_RES = [
    re.compile(
        r"^\s*(Requirement already satisfied|Collecting |Downloading |Installing collected|"
        r"Successfully installed|Using cached|Building wheel|Step \d+/\d+ :|---> )"
    ),
    re.compile(r"flask app\.py did not start for online log"),
    re.compile(r"^\s*\[?[\d\-: ]*(?:INFO)?\]?\s*HTTP Request:"),
]


def strip_leak_fields(
    obj: Any, keep_fields: frozenset[str] | set[str] = frozenset()
) -> tuple[Any, list[str]]:
    """Recursively drop leak keys from dicts/lists; returns (clean object, sorted removed key paths)."""
    removed: list[str] = []

    def walk(o, path):
        if isinstance(o, dict):
            out = {}
            for k, v in o.items():
                if str(k).lower() in LEAK_FIELDS and k not in keep_fields:
                    removed.append(f"{path}{k}")
                    continue
                out[k] = walk(v, f"{path}{k}.")
            return out
        if isinstance(o, list):
            return [walk(v, path) for v in o]
        return o

    return walk(obj, ""), sorted(removed)


def strip_leak_text(text: str, keep_fields=frozenset()) -> tuple[str, int]:
    """Replace ``"correct": false``-style pairs in free text; returns (text, number replaced)."""
    n = 0

    def sub(m):
        nonlocal n
        if m.group(2) in keep_fields:
            return m.group(0)
        n += 1
        return "[REDACTED LEAK FIELD]"

    return _LEAK_TEXT_RE.sub(sub, text), n


def redact_secrets(text: str) -> tuple[str, int]:
    """Replace API keys, bearer tokens and password/token values with ``[REDACTED]``."""
    n = 0
    for rx in _SECRET_RES:

        def sub(m, rx=rx):
            nonlocal n
            n += 1
            return (m.group(1) + REDACTED) if rx.groups >= 2 else REDACTED

        text = rx.sub(sub, text)
    return text, n


def collapse_noise(text: str) -> tuple[str, int]:
    """Drop environment-noise lines and collapse runs of identical lines to ``[previous line repeated N×]``.

    Repeats are kept visible (count preserved) because they are FM-1.3 evidence (DESIGN.md §5.3).
    """
    out: list[str] = []
    dropped = 0
    prev, reps = None, 0
    for line in text.split("\n"):
        if any(rx.search(line) for rx in _NOISE_RES):
            dropped += 1
            continue
        if line == prev and line.strip():
            reps += 1
            continue
        if reps:
            out.append(f"[previous line repeated {reps}x]")
        prev, reps = line, 0
        out.append(line)
    if reps:
        out.append(f"[previous line repeated {reps}x]")
    return "\n".join(out), dropped


@dataclass
class SanitizeReport:
    leak_fields_removed: list[str] = field(default_factory=list)
    leak_pairs_redacted: int = 0
    secrets_redacted: int = 0
    noise_lines_dropped: int = 0

    def to_dict(self):
        return dict(self.__dict__)


def sanitize_trace(
    trace: Trace,
    *,
    strip_leaks: bool = True,
    redact: bool = True,
    collapse: bool = True,
    keep_fields=frozenset(),
) -> tuple[Trace, SanitizeReport]:
    """A sanitised copy of `trace` (labels dropped, leaks stripped, secrets redacted) and what was done."""
    rep = SanitizeReport()
    keep_fields = frozenset(keep_fields)

    def clean(text: str) -> str:
        if strip_leaks:
            text, n = strip_leak_text(text, keep_fields)
            rep.leak_pairs_redacted += n
        if redact:
            text, n = redact_secrets(text)
            rep.secrets_redacted += n
        if collapse:
            text, n = collapse_noise(text)
            rep.noise_lines_dropped += n
        return text

    meta = dict(trace.metadata)
    if strip_leaks:
        meta, rep.leak_fields_removed = strip_leak_fields(meta, keep_fields)
    turns = [Turn(t.speaker, clean(t.content), t.role, t.timestamp) for t in trace.turns]
    return (
        replace(trace, task=clean(trace.task), turns=turns, raw=clean(trace.raw), metadata=meta, labels=None),
        rep,
    )
