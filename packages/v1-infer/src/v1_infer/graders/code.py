"""Code grading: run a candidate program against tests in a *separate process* (never in the calling
process) with a wall-clock timeout, an address-space limit and network access blocked.

Network blocking: the child runs ``python -I`` with a bootstrap that installs an audit hook (cannot be
removed from Python code) refusing ``socket.*`` connect/bind/getaddrinfo and ``subprocess``/``os.system``
spawns; on Linux it also tries ``unshare(CLONE_NEWNET)`` first (works where user namespaces are allowed).
This is a best-effort sandbox for grading benchmark candidates, not a security boundary for hostile code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

_BOOTSTRAP = r"""
import sys, os
def _deny(event, args):
    if event in ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto", "subprocess.Popen",
                 "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty"):
        raise PermissionError(f"v1-infer sandbox: {event} is not allowed")
sys.addaudithook(_deny)
_path = sys.argv[1]
sys.argv = [_path]
src = open(_path).read()
code = compile(src, _path, "exec")
exec(code, {"__name__": "__main__", "__file__": _path})
"""


@dataclass
class CodeResult:
    """Outcome of grading one program: ``passed`` only if every test passed."""

    passed: bool
    n_passed: int
    n_tests: int
    details: list[dict] = field(default_factory=list)


def _limits(memory_mb: int):
    def apply():  # runs in the child between fork and exec
        import resource

        os.setsid()
        if hasattr(os, "unshare") and hasattr(os, "CLONE_NEWNET"):
            try:
                os.unshare(os.CLONE_NEWNET)
            except OSError:
                pass  # not permitted: the audit hook still blocks sockets
        b = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (b, b))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_program(code: str, stdin: str = "", *, timeout: float = 5.0, memory_mb: int = 512) -> dict:
    """Run ``code`` as a Python program in a sandboxed subprocess; returns stdout, stderr, returncode and
    ``status`` in {"ok", "error", "timeout"}."""
    if timeout <= 0 or memory_mb <= 0:
        raise ValueError("timeout and memory_mb must be > 0")
    with tempfile.TemporaryDirectory(prefix="v1infer-") as tmp:
        path = os.path.join(tmp, "solution.py")
        with open(path, "w") as f:
            f.write(code)
        env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}
        try:
            p = subprocess.run(
                [sys.executable, "-I", "-c", _BOOTSTRAP, path],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=tmp,
                env=env,
                preexec_fn=_limits(memory_mb),
            )
        except subprocess.TimeoutExpired as e:
            return {
                "status": "timeout",
                "stdout": e.stdout or "",
                "stderr": e.stderr or "",
                "returncode": None,
            }
    return {
        "status": "ok" if p.returncode == 0 else "error",
        "stdout": p.stdout,
        "stderr": p.stderr[-2000:],
        "returncode": p.returncode,
    }


def _same_output(got: str, want: str) -> bool:
    return got.split() == want.split()  # whitespace-insensitive token comparison, as contest judges do


def grade_code(
    code: str | None,
    tests: list[dict],
    *,
    timeout: float = 5.0,
    memory_mb: int = 512,
    stop_on_fail: bool = True,
) -> CodeResult:
    """Grade ``code`` against ``tests``: each {"input": stdin, "output": expected stdout} or {"assert": src}
    (python statements appended after the program, e.g. ``assert f(2) == 4``)."""
    if not tests:
        raise ValueError("grade_code needs at least one test")
    if code is None:
        return CodeResult(False, 0, len(tests), [{"status": "no code block"}])
    details, n_ok = [], 0
    for t in tests:
        if "assert" in t:
            r = run_program(code + "\n\n" + t["assert"] + "\n", "", timeout=timeout, memory_mb=memory_mb)
            ok = r["status"] == "ok"
        elif "input" in t and "output" in t:
            r = run_program(code, t["input"], timeout=timeout, memory_mb=memory_mb)
            ok = r["status"] == "ok" and _same_output(r["stdout"], t["output"])
        else:
            raise ValueError(f"a test needs 'input'+'output' or 'assert', got keys {sorted(t)}")
        details.append({"status": r["status"], "ok": ok, "stderr": r["stderr"][-300:]})
        n_ok += ok
        if not ok and stop_on_fail:
            break
    return CodeResult(n_ok == len(tests), n_ok, len(tests), details)


def load_tests(spec: str | list) -> list[dict]:
    """Tests from a JSON string or a list (as stored in a JSONL field)."""
    return json.loads(spec) if isinstance(spec, str) else list(spec)
