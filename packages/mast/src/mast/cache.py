"""Content-addressed cache of judge completions (one JSON file per key).

Writes go to a private temp file beside the target (``mkstemp``), are fsynced and renamed into place
(`paperworks_shared.files.atomic_write_text`), so concurrent writers -- threads, processes, two
annotate runs sharing one cache folder -- never share a temp name and a reader only ever sees a complete
file. Both writers of one key write the same completion, so the last rename winning is harmless. A file
that cannot be read as a completion (torn by a crash of an older version, edited by hand) is a miss.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from paperworks_shared.files import atomic_write_text


def cache_key(**parts) -> str:
    """sha256 over the canonical JSON of everything that determines a judge answer."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class CompletionCache:
    """``get(key) -> dict | None`` / ``put(key, dict)`` under ``root/ab/abcdef....json``."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self._path(key)
        try:
            value = json.loads(p.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None  # absent or torn: a miss, not a crash
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            return None
        return value

    def put(self, key: str, value: dict) -> None:
        atomic_write_text(self._path(key), json.dumps(value, ensure_ascii=False))
