"""The one `Trace` schema every loader produces."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Turn:
    """One message/event of a multi-agent run."""

    speaker: str
    content: str
    role: str = ""
    timestamp: str = ""

    def render(self) -> str:
        who = self.speaker or self.role or "unknown"
        return f"[{who}] {self.content}"


@dataclass
class Trace:
    """A multi-agent execution trace, normalised.

    `turns` is the parsed timeline when the source format has one; `raw` is the original text when
    it does not (e.g. MAD's single `trajectory` string). `labels` holds reference labels (e.g. MAD's
    ``mast_annotation``) and is *never* rendered into a judge prompt.
    """

    trace_id: str
    mas_name: str = ""
    llm_name: str = ""
    benchmark: str = ""
    task: str = ""
    turns: list[Turn] = field(default_factory=list)
    raw: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, int] | None = None
    source_format: str = ""

    def __post_init__(self):
        if not str(self.trace_id):
            raise ValueError("a Trace needs a non-empty trace_id")
        self.trace_id = str(self.trace_id)
        self.turns = [t if isinstance(t, Turn) else Turn(**t) for t in self.turns]

    def text(self) -> str:
        """The trace as the judge sees it (before sanitisation): task header plus timeline or raw text."""
        parts = []
        if self.task:
            parts.append(f"TASK: {self.task}")
        if self.turns:
            parts.append("\n".join(t.render() for t in self.turns))
        if self.raw:
            parts.append(self.raw)
        return "\n\n".join(parts)

    def sha256(self) -> str:
        return hashlib.sha256(self.text().encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown Trace fields {sorted(extra)}; known: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)
