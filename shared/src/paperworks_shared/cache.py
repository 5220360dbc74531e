"""On-disk cache for things trained once and reused by every benchmark (models, logits, features)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """$PAPERWORKS_CACHE, default ~/.cache/paperworks."""
    return Path(os.environ.get("PAPERWORKS_CACHE", Path.home() / ".cache" / "paperworks")).expanduser()


def fingerprint(obj: Any) -> str:
    """Stable 16-hex-digit hash of a JSON-serialisable object (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_dir(namespace: str, key: Any) -> Path:
    """The folder for `key` under `namespace` (not created). A folder is complete once it holds DONE."""
    if not namespace or "/" in namespace or namespace.startswith("."):
        raise ValueError(f"bad cache namespace {namespace!r}")
    return cache_root() / namespace / fingerprint(key)


def is_complete(path: Path) -> bool:
    return (Path(path) / "DONE").is_file()


def mark_complete(path: Path, key: Any) -> None:
    """Write the key beside the artefacts, then the DONE marker (last, so a killed run never looks complete)."""
    path = Path(path)
    (path / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1, default=str))
    (path / "DONE").write_text("ok\n")
