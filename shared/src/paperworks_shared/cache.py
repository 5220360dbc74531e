"""On-disk cache for things trained once and reused by every benchmark (models, logits, features)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
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


def lock_path(path: Path) -> Path:
    """The lock file that serialises builders of cache folder `path`."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def get_or_build(namespace: str, key: Any, build: Callable[[Path], Any]) -> tuple[Path, bool]:
    """Return (folder, was_cached) for `key`, building it with `build(staging_dir)` if missing.

    Concurrent callers (threads or processes) wait on a file lock for one builder instead of racing;
    the builder writes into a private staging folder that is published by an atomic rename, so no
    reader ever sees a half-written folder and no two writers share a temp path."""
    from .files import file_lock, publish_dir, wait_note

    path = cache_dir(namespace, key)
    if is_complete(path):
        return path, True
    with file_lock(lock_path(path), message=wait_note(f"{namespace}/{path.name}")):
        if is_complete(path):
            return path, True

        def _build(staging: Path) -> None:
            build(staging)
            mark_complete(staging, key)

        publish_dir(_build, path)
    return path, False
