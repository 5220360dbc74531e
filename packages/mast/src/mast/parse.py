"""Robust parsing of judge outputs: JSON first, then a line-anchored, last-block-wins text parser.

Design (DESIGN.md §0.2, §3.3, §6.2): the official parser is a chain of first-match, IGNORECASE|DOTALL
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
import warnings
from dataclasses import dataclass, field

from .taxonomy import (
    ALIASES,
    CODE_PROMPT_LABELS,
    DEFINITIONS_TXT_LABELS,
    MAST_V3,
    TaxonomyVersion,
    normalize_id,
    resolve,
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


# connector words a judge may drop or replace ("No/Incorrect Verification", "No & incorrect ...")
_CONNECTORS = frozenset({"or", "and", "of", "to", "the", "a", "an"})


def _strip_name(rest: str, names: list[str]) -> tuple[str, bool]:
    """Remove a leading echoed mode name from `rest` (punctuation- and connector-insensitive).

    Returns (rest, removed?)."""
    words = re.findall(r"[A-Za-z0-9]+|[^A-Za-z0-9]+", rest)
    for name in names:
        target = [w for w in _norm(name).split() if w not in _CONNECTORS]
        got: list[str] = []
        i = 0
        while i < len(words) and len(got) < len(target):
            w = words[i]
            if re.match(r"[A-Za-z0-9]", w) and w.lower() not in _CONNECTORS:
                got.append(w.lower())
            i += 1
        if target and got == target:
            return "".join(words[i:]), True
    return rest, False


# "no" inside a compound name ("No/Incorrect", "no or incomplete", "Incorrect/No") is not an answer
_COMPOUND_AFTER = re.compile(r"\s*(?:[/&+]|or\b)", re.IGNORECASE)
_COMPOUND_BEFORE = re.compile(r"[/&+]\s*$")


def _answer_token(rest: str) -> re.Match | None:
    """The first explicit yes/no/true/false token of `rest` that is not part of a compound phrase."""
    for tok in _TOKEN.finditer(rest):
        if _COMPOUND_AFTER.match(rest, tok.end()) or _COMPOUND_BEFORE.search(rest[: tok.start()]):
            continue
        return tok
    return None


def _json_candidates(text: str) -> list[str]:
    cands = re.findall(r"```(?:json)?\s*(\{.*?\}|\[.*?\])\s*```", text, re.DOTALL)
    s = text.strip()
    if (s.startswith("{") and s.endswith("}")) or (s.startswith("[") and s.endswith("]")):
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
    cands += [c for c in spans if any(f'"{k}"' in c for k in _LIST_KEYS)]
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


_LIST_KEYS = ("failure_modes", "labels", "detected_modes", "detected_failure_modes", "detected", "modes")


def _list_item_id(item, tax: TaxonomyVersion) -> str | None:
    """The mode ID a list entry names: "1.1", "FM-1.1", "1.1 Disobey task specification", a mode name, or
    a dict with an id/mode/code/name field; None when it names no mode of `tax`."""
    if isinstance(item, dict):
        for k in ("id", "mode", "code", "failure_mode", "name"):
            if k in item:
                return _list_item_id(item[k], tax)
        return None
    if not isinstance(item, str):
        return None
    mid = _safe_id(item)
    if mid is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "3.2 Weak Verification": the ID wins, as in resolve()
                mid = resolve(item)
        except (KeyError, ValueError):
            return None
    return mid if mid in tax.ids else None


def _parse_json_list(obj, items: list, tax: TaxonomyVersion) -> ParsedAnnotation:
    """A JSON list of *detected* modes: listed -> yes, every other mode -> no (the list is exhaustive)."""
    labels: dict[str, bool | None] = {i: False for i in tax.ids}
    evidence, issues = {}, []
    for item in items:
        mid = _list_item_id(item, tax)
        if mid is None:
            issues.append(f"unknown_mode:{str(item)[:40]}")
            continue
        labels[mid] = True
        if isinstance(item, dict) and item.get("evidence"):
            evidence[mid] = str(item["evidence"])
    d = obj if isinstance(obj, dict) else {}
    return ParsedAnnotation(
        labels, _as_bool(d.get("task_completed")), str(d.get("summary", "")), evidence, issues, "json_list"
    )


def _parse_json(text: str, tax: TaxonomyVersion) -> ParsedAnnotation | None:
    for cand in reversed(_json_candidates(text)):  # last JSON object wins
        try:
            obj = json.loads(cand)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, list):
            if all(isinstance(x, (str, dict)) for x in obj):
                return _parse_json_list(None, obj, tax)
            continue
        if not isinstance(obj, dict):
            continue
        fm = next((obj[k] for k in _LIST_KEYS if k in obj), None)
        if isinstance(fm, list):
            return _parse_json_list(obj, fm, tax)
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
    lines: list[str] = []
    in_c_run = False  # inside a run of "C.1.1 yes" / "C.1.2 no" lines: one C block, not 14
    for line in text.split("\n"):
        m = _SECTION.match(line)
        if m and m.group("sec") == "C" and re.match(r"[*_\s]*(?:FM-?)?\d\.\d", m.group("rest")):
            if not in_c_run:
                lines.append(line[: m.start("rest")])  # "C. 1.1 ...: yes" -> header + mode line
            lines.append(m.group("rest"))
            in_c_run = True
        else:
            lines.append(line)
            in_c_run = in_c_run and _is_mode_line(line)
    return lines


_ANY_MODE_LINE = re.compile(r"^[\s>*_\-•#|]*(?:\d{1,2}[.)]\s+)?[*_]*(?:FM[-\s]?)?\d\.\d(?!\d)", re.IGNORECASE)


def _is_mode_line(line: str) -> bool:
    return bool(_ANY_MODE_LINE.match(line))


@functools.lru_cache(maxsize=1024)
def _mode_line_re(mode_id: str) -> re.Pattern:
    # line-anchored; optional bullets/markdown/"C"/"FM-" prefix; escaped ID not followed by another digit
    # also numbered lists: "1. 1.1 Disobey task specification: yes", "3) FM-1.3: no"
    return re.compile(
        rf"^[\s>*_\-•#|]*(?:C\.?\s*)?(?:\d{{1,2}}[.)]\s+)?[*_]*(?:FM[-\s]?)?{re.escape(mode_id)}(?![\d])"
        rf"[*_]*(?P<rest>.*)$",
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
    heads: dict[str, re.Match] = {}
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            last[m.group("sec")] = i
            heads[m.group("sec")] = m
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
            tok = _answer_token(rest)
            if tok is None and not rest.strip(" \t:-—–=.>") and j + 1 < len(block):
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
    if "A" in heads:
        nxt = [i for i in (last["B"], last["C"]) if i > last["A"]]
        rest_a = [heads["A"].group("rest")]
        summary = " ".join(rest_a + lines[last["A"] + 1 : min(nxt) if nxt else len(lines)]).strip()
    if "B" in heads:
        tok = _answer_token(heads["B"].group("rest"))
        completed = None if tok is None else tok.group(1).lower() in _TRUE
    if completed is None:
        issues.append("missing:task_completed")
    return ParsedAnnotation(labels, completed, summary, {}, issues, "text")
