"""Robust parsing of judge outputs: JSON first, then a line-anchored, last-block-wins text parser.

Design (notes §0.2, §3.3, §6.2): the official parser is a chain of first-match, IGNORECASE|DOTALL
regexes without word boundaries, so "Ig*no*red Other Agent's Input: yes" and "*No* or Incorrect
Verification: yes" read as "no", a summary with "etc." steals answers and a missing mode silently
becomes 0. Here:

* a mode is read only from a line that *starts* with its escaped ID (``1.10`` never matches ``1.1``);
* the echoed mode name is removed before looking for the answer, and only explicit tokens
  ``yes|no|true|false`` bounded by ``\\b`` count ("Not observed", "None", "know" are not answers);
* the last ``C`` block wins (a judge that echoes the template or quotes a trace first is fine);
* a mode with no readable answer is ``None`` and a ``missing:<id>`` / ``unparsed:<id>`` issue is
  recorded -- never "no".
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field

from .taxonomy import (
    ALIASES,
    CODE_PROMPT_LABELS,
    DEFINITIONS_TXT_LABELS,
    MAST_V3,
    TaxonomyVersion,
    normalize_id,
)

_TOKEN = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
_TRUE = {"yes", "true"}


@dataclass
class ParsedAnnotation:
    """What could be read from one judge response."""

    labels: dict[str, bool | None]
    task_completed: bool | None = None
    summary: str = ""
    evidence: dict[str, str] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    format: str = "text"

    @property
    def n_unparsed(self) -> int:
        return sum(v is None for v in self.labels.values())


def _names_for(mode_id: str, tax: TaxonomyVersion) -> list[str]:
    return _names_cached(mode_id, tax.name, tax.by_id(mode_id).name)


@functools.lru_cache(maxsize=1024)
def _names_cached(mode_id: str, tax_name: str, own_name: str) -> list[str]:
    names = {
        own_name,
        CODE_PROMPT_LABELS.get(mode_id, ""),
        DEFINITIONS_TXT_LABELS.get(mode_id, ""),
    }
    names |= {MAST_V3.by_id(mode_id).name} if mode_id in MAST_V3.ids else set()
    for src in ALIASES.values():
        names |= {k for k, v in src.items() if v == mode_id}
    # every name any source ever attached to this slot, longest first (so the longest echo is removed)
    names |= set(DEFINITIONS_TXT_LABELS.values()) if mode_id in ("3.2", "3.3") else set()
    return sorted({n for n in names if n}, key=len, reverse=True)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def _strip_name(rest: str, names: list[str]) -> tuple[str, bool]:
    """Remove a leading echoed mode name from `rest` (punctuation-insensitive). Returns (rest, removed?)."""
    words = re.findall(r"[A-Za-z0-9]+|[^A-Za-z0-9]+", rest)
    for name in names:
        target = _norm(name).split()
        got, i = [], 0
        while i < len(words) and len(got) < len(target):
            w = words[i]
            if re.match(r"[A-Za-z0-9]", w):
                got.append(w.lower())
            i += 1
        if got == target:
            return "".join(words[i:]), True
    return rest, False


def _json_candidates(text: str) -> list[str]:
    cands = re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    s = text.strip()
    if s.startswith("{") and s.endswith("}"):
        cands.append(s)
    # the last balanced {...} that mentions failure modes
    depth, start = 0, None
    spans = []
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                spans.append(text[start : i + 1])
    cands += [c for c in spans if "failure_modes" in c]
    return cands


def _as_bool(v) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        m = _TOKEN.fullmatch(v.strip().strip(".").lower())
        return (m.group(1) in _TRUE) if m else None
    if isinstance(v, dict):
        for k in ("present", "value", "label", "answer"):
            if k in v:
                return _as_bool(v[k])
    return None


def _parse_json(text: str, tax: TaxonomyVersion) -> ParsedAnnotation | None:
    for cand in reversed(_json_candidates(text)):  # last JSON object wins
        try:
            obj = json.loads(cand)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        fm = obj.get("failure_modes", obj.get("labels"))
        if not isinstance(fm, dict):
            continue
        labels: dict[str, bool | None] = {i: None for i in tax.ids}
        evidence, issues = {}, []
        for k, v in fm.items():
            try:
                mid = normalize_id(str(k).split()[0])
            except ValueError:
                issues.append(f"unknown_key:{k}")
                continue
            if mid not in labels:
                issues.append(f"unknown_mode:{mid}")
                continue
            labels[mid] = _as_bool(v)
            if labels[mid] is None:
                issues.append(f"unparsed:{mid}")
            if isinstance(v, dict) and v.get("evidence"):
                evidence[mid] = str(v["evidence"])
        issues += [f"missing:{m}" for m in tax.ids if m not in {_safe_id(k) for k in fm}]
        return ParsedAnnotation(
            labels, _as_bool(obj.get("task_completed")), str(obj.get("summary", "")), evidence, issues, "json"
        )
    return None


def _safe_id(k) -> str | None:
    try:
        return normalize_id(str(k).split()[0])
    except ValueError:
        return None


_SECTION = re.compile(r"^[\s#>*_\-]*(?P<sec>[ABC])\s*[.):]\s*(?P<rest>.*)$")
# run-together template answers ("... : yes 1.2 ...: no") -> one mode per line
_SPLIT_AFTER_ANSWER = re.compile(
    r"(\b(?:yes|no|true|false)\b[*_.,;]*)[ \t]+(?=[*_\-\s]*(?:FM-?)?\d\.\d(?!\d))", re.IGNORECASE
)
_SPLIT_SECTION = re.compile(r"(?<=\S)[ \t]+(?=(?:\*\*)?[ABC]\.\s)")


def _preprocess(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").strip()
    text = re.sub(r"^@@+|@@+$", "", text).strip()
    text = _SPLIT_AFTER_ANSWER.sub(r"\1\n", text)
    text = _SPLIT_SECTION.sub("\n", text)
    lines = []
    for line in text.split("\n"):
        m = _SECTION.match(line)
        if m and m.group("sec") == "C" and re.match(r"[*_\s]*(?:FM-?)?\d\.\d", m.group("rest")):
            lines += [line[: m.start("rest")], m.group("rest")]  # "C. 1.1 ...: yes" -> header + mode line
        else:
            lines.append(line)
    return lines


@functools.lru_cache(maxsize=1024)
def _mode_line_re(mode_id: str) -> re.Pattern:
    # line-anchored; optional bullets/markdown/"C"/"FM-" prefix; escaped ID not followed by another digit
    return re.compile(
        rf"^[\s>*_\-•#|]*(?:C\.?\s*)?[*_]*(?:FM[-\s]?)?{re.escape(mode_id)}(?![\d])[*_]*(?P<rest>.*)$",
        re.IGNORECASE,
    )


def parse_judge_output(text: str, taxonomy: TaxonomyVersion = MAST_V3) -> ParsedAnnotation:
    """Parse one judge response into per-mode labels (True/False/None), summary and task completion."""
    if not isinstance(text, str):
        raise TypeError(f"judge output must be str, got {type(text).__name__}")
    js = _parse_json(text, taxonomy)
    if js is not None:
        return js
    lines = _preprocess(text)
    # sections: remember the index of the last A/B/C header lines
    last = {"A": -1, "B": -1, "C": -1}
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            last[m.group("sec")] = i
    c0 = last["C"] + 1 if last["C"] >= 0 else 0
    c_end = len(lines)
    if last["C"] >= 0:
        for sec in ("A", "B"):  # a later A/B header closes the last C block
            if last[sec] > last["C"]:
                c_end = min(c_end, last[sec])
    block = lines[c0:c_end]
    issues: list[str] = []
    labels: dict[str, bool | None] = {}
    for mid in taxonomy.ids:
        rx, names = _mode_line_re(mid), _names_for(mid, taxonomy)
        found_line, value = False, None
        for j, line in enumerate(block):
            m = rx.match(line)
            if not m:
                continue
            found_line = True
            rest = re.sub(r"[*_`]", "", m.group("rest"))
            rest, named = _strip_name(rest.lstrip(" \t.:-—–)"), names)
            if not named and ":" in rest:
                rest = rest.split(":", 1)[1]
            tok = _TOKEN.search(rest)
            if tok is None and not rest.strip(" \t:-—–=.") and j + 1 < len(block):
                tok = _TOKEN.fullmatch(re.sub(r"[*_`.\s]", "", block[j + 1]))  # "1.1\nyes"
            v = None if tok is None else tok.group(1).lower() in _TRUE
            if v is not None:
                if value is not None and value != v:
                    issues.append(f"conflict:{mid}")
                value = v  # last line wins
        labels[mid] = value
        if value is None:
            issues.append(f"unparsed:{mid}" if found_line else f"missing:{mid}")
    summary, completed = "", None
    if last["A"] >= 0:
        a = _SECTION.match(lines[last["A"]]).group("rest")
        nxt = [i for i in (last["B"], last["C"]) if i > last["A"]]
        summary = " ".join([a] + lines[last["A"] + 1 : min(nxt) if nxt else len(lines)]).strip()
    if last["B"] >= 0:
        tok = _TOKEN.search(_SECTION.match(lines[last["B"]]).group("rest"))
        completed = None if tok is None else tok.group(1).lower() in _TRUE
    if completed is None:
        issues.append("missing:task_completed")
    return ParsedAnnotation(labels, completed, summary, {}, issues, "text")
