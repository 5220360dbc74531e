"""Writes that are never half-done: temp file + fsync + `os.replace`, append-and-fsync JSONL, file locks.

Stdlib only (no torch import), so light packages can use it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a private temp path beside `path`; on success fsync it and rename it over `path`.

    On an exception the temp file is removed and `path` keeps its old content (nothing clobbered)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(obj: Any, indent: int | None = 1, default: Callable | None = None) -> str:
    """JSON that any parser reads: NaN/Infinity are refused with the offending key path named."""
    _check_finite(obj, "$")
    return json.dumps(obj, indent=indent, allow_nan=False, default=default)


def _check_finite(obj: Any, where: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite number {obj!r} at {where}: JSON records must hold finite numbers")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")


def atomic_write_json(
    path: str | Path, obj: Any, indent: int | None = 1, default: Callable | None = None
) -> Path:
    """Strict JSON (no NaN) written atomically."""
    return atomic_write_text(path, strict_json(obj, indent=indent, default=default) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save` to a temp file, then rename: a crash never leaves a truncated checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def append_jsonl(path: str | Path, record: Any) -> None:
    """Append one JSON line and fsync it: a record returned from here survives a crash or Ctrl-C."""
    line = json.dumps(record, allow_nan=False, ensure_ascii=False) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path, *, tolerate_torn_tail: bool = True) -> list[Any]:
    """Read a JSONL file written by `append_jsonl`.

    A torn last line (a crash mid-write) is dropped with a warning when `tolerate_torn_tail`; any other
    malformed line raises ValueError naming the file and line number."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    out: list[Any] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            last = all(not rest.strip() for rest in lines[i:])
            if last and tolerate_torn_tail:
                print(f"warning: {path}:{i}: dropping a torn last line ({e.msg})", file=sys.stderr)
                break
            raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    return out


@contextlib.contextmanager
def file_lock(path: str | Path, *, message: str | None = None) -> Iterator[None]:
    """Exclusive advisory lock on `path` (created if needed); waits for the holder. POSIX `flock`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if message:
                print(message, file=sys.stderr)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def publish_dir(build: Callable[[Path], Any], dest: str | Path) -> Path:
    """Build a folder in a private staging dir beside `dest`, then rename it into place.

    Concurrent publishers never share a staging dir; the last rename wins and readers only ever see a
    complete folder. Callers that must build once should hold `file_lock` around this."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.staging-"))
    try:
        build(staging)
        if dest.exists():
            # Move the old folder aside first: rename() cannot replace a non-empty directory.
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
            os.rename(dest, old / "x")
            os.rename(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def wait_note(what: str) -> str:
    return f"[{time.strftime('%H:%M:%S')}] another process is building {what}; waiting for it"
