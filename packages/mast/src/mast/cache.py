"""Content-addressed cache of judge completions (one JSON file per key; atomic writes)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


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
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # a torn file is a miss, not a crash

    def put(self, key: str, value: dict) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, p)
