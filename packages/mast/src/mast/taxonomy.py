"""Versioned MAST taxonomies (paper v3 canonical) and the alias tables for drifted names.

Join annotations on mode *IDs*, never on names: the names and even the meaning of 3.2/3.3 drift
between the paper (v3, Appendix A), the authors' judge prompt and their ``definitions.txt``
(DESIGN.md §0.1, §6.1). Definitions here are written in this package's own words.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FailureMode:
    """One failure mode: a stable ID ("1.1"), a name, a category ID ("FC1") and a short definition."""

    id: str
    name: str
    category: str
    definition: str
    stage: str = ""

    @property
    def code(self) -> str:
        return f"FM-{self.id}"


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    description: str


@dataclass(frozen=True)
class TaxonomyVersion:
    """A named taxonomy version: its categories and modes, in order."""

    name: str
    categories: tuple[Category, ...]
    modes: tuple[FailureMode, ...]
    source: str = ""
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        ids = [m.id for m in self.modes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"taxonomy {self.name!r} has duplicate mode IDs: {ids}")
        cats = {c.id for c in self.categories}
        for m in self.modes:
            if m.category not in cats:
                raise ValueError(f"mode {m.id} of {self.name!r} names unknown category {m.category!r}")
        self._index.update({m.id: m for m in self.modes})

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.modes]

    def by_id(self, mode_id: str) -> FailureMode:
        key = normalize_id(mode_id)
        if key not in self._index:
            raise KeyError(f"no mode {mode_id!r} in taxonomy {self.name!r}; known IDs: {self.ids}")
        return self._index[key]

    def category_of(self, mode_id: str) -> str:
        return self.by_id(mode_id).category

    def modes_in(self, category: str) -> list[FailureMode]:
        return [m for m in self.modes if m.category == category]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "categories": [c.__dict__ for c in self.categories],
            "modes": [m.__dict__ | {"code": m.code} for m in self.modes],
        }

    def to_markdown(self) -> str:
        lines = [f"# {self.name}", "", f"Source: {self.source}", ""]
        for c in self.categories:
            lines += [
                f"## {c.id} {c.name}",
                "",
                c.description,
                "",
                "| ID | name | definition |",
                "|---|---|---|",
            ]
            lines += [f"| {m.code} | {m.name} | {m.definition} |" for m in self.modes_in(c.id)]
            lines.append("")
        return "\n".join(lines)


_ID_RE = re.compile(r"^(?:FM[-_ ]?)?(\d)\.(\d)$", re.IGNORECASE)


def normalize_id(mode_id: str) -> str:
    """ "FM-1.1", "fm1.1", " 1.1 " -> "1.1"; anything else raises ValueError."""
    m = _ID_RE.match(str(mode_id).strip())
    if not m:
        raise ValueError(f"not a failure-mode ID: {mode_id!r} (expected like '1.1' or 'FM-1.1')")
    return f"{m.group(1)}.{m.group(2)}"


_CATS = (
    Category(
        "FC1",
        "System Design Issues",
        "Failures rooted in how the system is built: its architecture, conversation management, task "
        "specification and role definitions.",
    ),
    Category(
        "FC2",
        "Inter-Agent Misalignment",
        "Failures that arise from how the agents interact: poor communication, working at cross "
        "purposes, drifting away from the task.",
    ),
    Category(
        "FC3",
        "Task Verification",
        "Failures in finishing and checking: stopping too early, or nothing making sure the result is "
        "correct and complete.",
    ),
)

# (id, v3 name, category, own-words definition, stage per agentdash's stage_span)
_V3 = (
    (
        "1.1",
        "Disobey task specification",
        "FC1",
        "An agent ignores or breaks the stated requirements or "
        "constraints of the task, degrading or invalidating the result.",
        "pre",
    ),
    (
        "1.2",
        "Disobey role specification",
        "FC1",
        "An agent steps outside the duties of its assigned role, e.g. taking over another agent's job.",
        "pre",
    ),
    (
        "1.3",
        "Step repetition",
        "FC1",
        "Steps that were already completed are redone without need, wasting turns and inviting new errors.",
        "exec",
    ),
    (
        "1.4",
        "Loss of conversation history",
        "FC1",
        "Context is unexpectedly lost, so an agent acts as if "
        "recent exchanges never happened and reverts to an older state.",
        "exec",
    ),
    (
        "1.5",
        "Unaware of termination conditions",
        "FC1",
        "The agents do not recognise when the interaction should end, so it runs on needlessly.",
        "post",
    ),
    (
        "2.1",
        "Conversation reset",
        "FC2",
        "The dialogue restarts for no good reason, discarding context and progress.",
        "pre",
    ),
    (
        "2.2",
        "Fail to ask for clarification",
        "FC2",
        "An agent proceeds on unclear or incomplete information instead of asking for what is missing.",
        "exec",
    ),
    (
        "2.3",
        "Task derailment",
        "FC2",
        "The work drifts away from the actual objective into off-topic or unproductive steps.",
        "exec",
    ),
    (
        "2.4",
        "Information withholding",
        "FC2",
        "An agent keeps back information that would have changed other agents' decisions.",
        "exec",
    ),
    (
        "2.5",
        "Ignored other agent's input",
        "FC2",
        "An agent disregards or underweights what other agents said or suggested.",
        "exec",
    ),
    (
        "2.6",
        "Reasoning-action mismatch",
        "FC2",
        "An agent's actions diverge from what its own stated reasoning says it should do.",
        "exec",
    ),
    (
        "3.1",
        "Premature termination",
        "FC3",
        "The run ends before the needed information is exchanged or the "
        "goal is met, leaving an incomplete or wrong result.",
        "post",
    ),
    (
        "3.2",
        "No or incomplete verification",
        "FC3",
        "Checking of the outputs is skipped or only partly done, so errors go undetected.",
        "post",
    ),
    (
        "3.3",
        "Incorrect verification",
        "FC3",
        "A check is performed but it is inadequate: key facts or "
        "decisions are not properly validated, so errors slip through.",
        "post",
    ),
)

MAST_V3 = TaxonomyVersion(
    name="mast-v3",
    categories=_CATS,
    modes=tuple(FailureMode(i, n, c, d, s) for i, n, c, d, s in _V3),
    source="arXiv 2503.13657v3, Appendix A (names); definitions paraphrased by this package",
)

# Labels as the authors' judge prompt prints them (openevolve-mast evaluator.py; agentdash annotator.py).
CODE_PROMPT_LABELS: dict[str, str] = {
    "1.1": "Disobey Task Specification",
    "1.2": "Disobey Role Specification",
    "1.3": "Step Repetition",
    "1.4": "Loss of Conversation History",
    "1.5": "Unaware of Termination Conditions",
    "2.1": "Conversation Reset",
    "2.2": "Fail to Ask for Clarification",
    "2.3": "Task Derailment",
    "2.4": "Information Withholding",
    "2.5": "Ignored Other Agent's Input",
    "2.6": "Action-Reasoning Mismatch",
    "3.1": "Premature Termination",
    "3.2": "No or Incorrect Verification",
    "3.3": "Weak Verification",
}

# The authors' prompt ships a stale example answer with 16 lines (1.1-1.6, 2.1-2.7, 3.1-3.3: the
# pre-v3 numbering); judges sometimes echo it before their real answer, which the parser must skip.
STALE_EXAMPLE_IDS: tuple[str, ...] = (
    tuple(f"1.{i}" for i in range(1, 7))
    + tuple(f"2.{i}" for i in range(1, 8))
    + tuple(f"3.{i}" for i in range(1, 4))
)

MAST_CODE_PROMPT = TaxonomyVersion(
    name="mast-code-prompt-2025",
    categories=_CATS,
    modes=tuple(
        FailureMode(m.id, CODE_PROMPT_LABELS[m.id], m.category, m.definition, m.stage) for m in MAST_V3.modes
    ),
    source="authors' judge prompt (openevolve-mast evaluator.py, agentdash annotator.py); same IDs and "
    "meanings as v3, drifted names",
)

# The authors' definitions.txt swaps the *meanings*: 3.2 = Weak Verification, 3.3 = No or Incorrect.
DEFINITIONS_TXT_LABELS = dict(CODE_PROMPT_LABELS) | {
    "3.2": "Weak Verification",
    "3.3": "No or Incorrect Verification",
}

VERSIONS: dict[str, TaxonomyVersion] = {MAST_V3.name: MAST_V3, MAST_CODE_PROMPT.name: MAST_CODE_PROMPT}


def get(name: str = "mast-v3") -> TaxonomyVersion:
    """The taxonomy version registered under `name` (default: the canonical paper v3)."""
    if name not in VERSIONS:
        raise KeyError(f"unknown taxonomy version {name!r}; known: {sorted(VERSIONS)}")
    return VERSIONS[name]


def _norm_name(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


# Name -> canonical v3 ID, per source. "paper"/"prompt" share meanings; "definitions.txt" swaps 3.2/3.3.
ALIASES: dict[str, dict[str, str]] = {
    "paper": {_norm_name(m.name): m.id for m in MAST_V3.modes},
    "prompt": {_norm_name(v): k for k, v in CODE_PROMPT_LABELS.items()},
    "definitions.txt": {_norm_name(v): k for k, v in DEFINITIONS_TXT_LABELS.items()},
}
ALIASES["prompt"] |= {
    _norm_name("Reasoning-Action Mismatch"): "2.6",
    _norm_name("Ignored other agents input"): "2.5",
}

# The judge prompt prints 3.2 "No or Incorrect Verification" / 3.3 "Weak Verification"; definitions.txt
# prints the opposite pairing. Which label a name means therefore depends on its source (DESIGN.md §0.1).
SWAPPED_SOURCES = {"definitions.txt"}


def resolve(name_or_id: str, source: str = "auto") -> str:
    """Canonical v3 ID for a mode name or ID as written by `source` ("paper", "prompt", "definitions.txt").

    "auto" tries the paper names, then the prompt names; a name that is only known under the swapped
    ``definitions.txt`` semantics must be resolved with that source explicitly (a warning is issued).
    """
    s = str(name_or_id).strip()
    try:
        return normalize_id(s)
    except ValueError:
        pass
    m = re.match(r"^(?:FM[-_ ]?)?(\d\.\d)\b\s*[:\-]?\s*(.*)$", s, re.IGNORECASE)
    if m:  # "3.2 Weak Verification": the ID wins, but warn when the name contradicts it for the source
        mid, rest = m.group(1), m.group(2)
        if rest:
            try:
                by_name = resolve(rest, source)
                if by_name != mid:
                    warnings.warn(
                        f"{s!r}: ID {mid} but name means {by_name} under source {source!r}; using the ID",
                        stacklevel=2,
                    )
            except KeyError:
                pass
        return mid
    key = _norm_name(s)
    sources = ["paper", "prompt"] if source == "auto" else [source]
    for src in sources:
        if src not in ALIASES:
            raise KeyError(f"unknown alias source {src!r}; known: {sorted(ALIASES)}")
        if key in ALIASES[src]:
            if src in SWAPPED_SOURCES and key in (
                _norm_name("Weak Verification"),
                _norm_name("No or Incorrect Verification"),
            ):
                warnings.warn(f"{s!r} resolved with the swapped 3.2/3.3 semantics of {src}", stacklevel=2)
            return ALIASES[src][key]
    raise KeyError(f"unknown failure-mode name {name_or_id!r} for source {source!r}")
