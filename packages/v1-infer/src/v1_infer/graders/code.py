"""Code grading: run a candidate program against tests in a separate, sandboxed process.

**What "passed" means.** A stdin/stdout test passes when the program exits with status 0 and its stdout
matches the expected output (whitespace-insensitive). An ``assert`` test passes only when the program ran,
*every* test statement after it executed and held, and the trusted harness then wrote a per-run random
nonce to a private pipe (not stdout) and the process exited with status 0. ``sys.exit(0)``,
``os._exit(0)``, an exception swallowed by a ``finally``, or printing a fake nonce therefore fail.

**Isolation** (each run; `isolation()` reports which applies on this machine):

* a fresh temporary working directory, a clean environment (``PATH``, ``LANG``, ``PYTHONHASHSEED`` only),
  ``python -I`` (no user site, no ``PYTHON*`` variables), a new session (the whole process group is
  killed on timeout or overflow);
* rlimits: CPU seconds, address space (``memory_mb``), file size, open files, no core dumps;
* bounded output: at most ``max_output_bytes`` of stdout and of stderr are read; more kills the program
  (status ``output_limit``);
* an audit hook (cannot be removed from Python code) refusing sockets, subprocess/exec/fork/``os.system``
  and *all* ``ctypes`` loading and foreign calls;
* where ``unshare -r -n -m`` works (Linux with user namespaces; probed once): a new network namespace
  (no network at all, also for native code), and a new mount namespace in which every existing mount is
  remounted read-only and ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are fresh private tmpfs; the program
  runs in ``/tmp/work`` inside it. Files it writes anywhere vanish with the run.

**Not isolated:** the program runs as the calling user (inside the user namespace it is mapped to that
user), can read whatever that user can read, and can use CPU and memory up to the limits; without
``unshare`` (fallback, ``isolation()["namespaces"] is False``) network and file-system protection rest on
the audit hook only, which native code (a C extension already importable) could bypass. A program that
introspects the interpreter (frames, ``gc``) can find the nonce: the nonce defeats early exits and fake
output, not deliberately hostile code. This is a grader for benchmark candidates, not a security boundary.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

DEFAULT_MAX_OUTPUT = 1 << 20  # bytes of stdout (and of stderr) read per run
_FILE_SIZE_LIMIT = 16 << 20
_OPEN_FILES_LIMIT = 64

# Runs first in the child. Reads its job from fd argv[1] (then closed), optionally sets up the mount
# namespace, installs the audit hook, runs the program, then the tests, then reports the nonce on fd argv[2].
_BOOTSTRAP = r"""
import os, sys, json
_chunks = []
_fd = int(sys.argv[1])
while True:
    _b = os.read(_fd, 1 << 16)
    if not _b:
        break
    _chunks.append(_b)
os.close(_fd)
_job = json.loads(b"".join(_chunks).decode())
_result_fd = int(sys.argv[2])
if _job["mounts"]:
    import ctypes
    _libc = ctypes.CDLL(None, use_errno=True)
    def _mount(src, dst, fstype, flags, data):
        if _libc.mount(src, dst, fstype, flags, data) != 0:
            raise OSError(ctypes.get_errno(), "mount " + dst.decode())
    for _mp in (b"/tmp", b"/var/tmp", b"/dev/shm"):
        if os.path.isdir(_mp):
            _mount(b"none", _mp, b"tmpfs", 0, b"size=64m,mode=1777")
    _private = {"/tmp", "/var/tmp", "/dev/shm"}
    for _line in open("/proc/self/mountinfo"):
        _mp = _line.split()[4].replace("\\040", " ")
        if _mp in _private or _mp.startswith(("/proc", "/sys", "/dev")):
            continue
        _libc.mount(None, _mp.encode(), None, 4096 | 32 | 1, None)  # MS_BIND|MS_REMOUNT|MS_RDONLY, best effort
    os.makedirs("/tmp/work")
    os.chdir("/tmp/work")
    del _libc, _mount
_DENY = ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg",
         "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
         "os.kill", "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata", "ctypes.addressof")
def _deny(event, args, _deny=_DENY):
    if event in _deny:
        raise PermissionError(f"v1-infer sandbox: {event} is not allowed")
sys.addaudithook(_deny)
_path = _job["path"]
sys.argv = [_path]
_globals = {"__name__": "__main__", "__file__": _path, "__builtins__": __builtins__}
_program = compile(_job["code"], _path, "exec")
_tests = compile(_job["tests"], "<tests>", "exec") if _job["tests"] is not None else None
_nonce = _job["nonce"].encode()
del _job, _chunks
exec(_program, _globals)
if _tests is not None:
    exec(_tests, _globals)
sys.stdout.flush()
sys.stderr.flush()
os.write(_result_fd, _nonce)
"""


@dataclass
class CodeResult:
    """Outcome of grading one program: ``passed`` only if every test passed."""

    passed: bool
    n_passed: int
    n_tests: int
    details: list[dict] = field(default_factory=list)


@functools.lru_cache(maxsize=1)
def _unshare_works() -> bool:
    """Whether `unshare -r -n -m` can start a process here (probed once per interpreter)."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux"):
        return False
    try:
        r = subprocess.run(
            [exe, "-r", "-n", "-m", "--propagation", "private", sys.executable, "-I", "-c", "pass"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def isolation() -> dict:
    """What this machine's sandbox isolates (see the module docstring)."""
    ns = _unshare_works()
    return {
        "namespaces": ns,
        "network": "new network namespace + audit hook" if ns else "audit hook only",
        "filesystem": "read-only mounts, private /tmp tmpfs" if ns else "temp cwd + audit hook only",
        "rlimits": ["cpu", "address_space", "file_size", "open_files", "core=0"],
        "output_bytes": DEFAULT_MAX_OUTPUT,
    }


def _limits(memory_mb: int, cpu_s: int):
    def apply():  # runs in the child between fork and exec
        import resource

        b = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (b, b))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_SIZE_LIMIT, _FILE_SIZE_LIMIT))
        resource.setrlimit(resource.RLIMIT_NOFILE, (_OPEN_FILES_LIMIT, _OPEN_FILES_LIMIT))

    return apply


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _execute(
    code: str, tests_src: str | None, stdin: str, timeout: float, memory_mb: int, max_output: int
) -> dict:
    nonce = secrets.token_hex(16)
    use_ns = _unshare_works()
    with tempfile.TemporaryDirectory(prefix="v1infer-") as tmp:
        path = os.path.join(tmp, "solution.py")
        with open(path, "w") as f:  # kept for tracebacks and the fallback's cwd; the job goes by pipe
            f.write(code)
        job = json.dumps(
            {
                "code": code,
                "tests": tests_src,
                "nonce": nonce,
                "path": "/tmp/work/solution.py" if use_ns else path,
                "mounts": use_ns,
            }
        ).encode()
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        cmd = [sys.executable, "-I", "-c", _BOOTSTRAP, str(job_r), str(res_w)]
        unshare = shutil.which("unshare") if use_ns else None
        if use_ns:
            if unshare is None:  # _unshare_works() found it a moment ago; it vanished from PATH
                raise RuntimeError("unshare is no longer on PATH; cannot isolate the test run")
            cmd = [unshare, "-r", "-n", "-m", "--propagation", "private", *cmd]
        env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}
        cpu_s = max(1, int(timeout) + 1)
        try:
            p = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=tmp,
                env=env,
                pass_fds=(job_r, res_w),
                start_new_session=True,
                preexec_fn=_limits(memory_mb, cpu_s),
            )
        finally:
            os.close(job_r)
            os.close(res_w)
        bufs = {"stdout": bytearray(), "stderr": bytearray(), "result": bytearray()}
        overflow = threading.Event()

        def pump(stream_or_fd, name, limit):
            read = (
                (lambda n: os.read(stream_or_fd, n)) if isinstance(stream_or_fd, int) else stream_or_fd.read1
            )
            while True:
                try:
                    chunk = read(65536)
                except (OSError, ValueError):
                    break
                if not chunk:
                    break
                room = limit - len(bufs[name])
                bufs[name] += chunk[: max(room, 0)]
                if len(chunk) > room:
                    overflow.set()
                    _kill_group(p)
                    break

        def feed(stream, data):
            try:
                stream.write(data)
                stream.close()
            except (OSError, ValueError):
                pass

        threads = [
            threading.Thread(target=pump, args=(p.stdout, "stdout", max_output), daemon=True),
            threading.Thread(target=pump, args=(p.stderr, "stderr", max_output), daemon=True),
            threading.Thread(target=pump, args=(res_r, "result", 256), daemon=True),
        ]

        def send_job():
            view = memoryview(job)
            try:
                while view:
                    n = os.write(job_w, view[:65536])
                    view = view[n:]
            except OSError:
                pass
            finally:
                os.close(job_w)

        threads.append(threading.Thread(target=send_job, daemon=True))
        threads.append(threading.Thread(target=feed, args=(p.stdin, stdin.encode()), daemon=True))
        for t in threads:
            t.start()
        status = None
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = "timeout"
            _kill_group(p)
            p.wait()
        _kill_group(p)  # anything the program left running in its group
        deadline = time.monotonic() + 5
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        os.close(res_r)
        if overflow.is_set():
            status = "output_limit"
        elif status is None:
            status = "ok" if p.returncode == 0 else "error"
    return {
        "status": status,
        "stdout": bufs["stdout"].decode("utf-8", "replace"),
        "stderr": bufs["stderr"].decode("utf-8", "replace")[-2000:],
        "returncode": p.returncode if status != "timeout" else None,
        "completed": bytes(bufs["result"]) == nonce.encode(),
    }


def run_program(
    code: str,
    stdin: str = "",
    *,
    timeout: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT,
) -> dict:
    """Run ``code`` as a Python program in the sandbox; returns stdout, stderr, returncode, ``status`` in
    {"ok", "error", "timeout", "output_limit"} and ``completed`` (the harness ran to its end)."""
    if timeout <= 0 or memory_mb <= 0 or max_output_bytes <= 0:
        raise ValueError("timeout, memory_mb and max_output_bytes must be > 0")
    return _execute(code, None, stdin, timeout, memory_mb, max_output_bytes)


def _same_output(got: str, want: str) -> bool:
    return got.split() == want.split()  # whitespace-insensitive token comparison, as contest judges do


def grade_code(
    code: str | None,
    tests: list[dict],
    *,
    timeout: float = 5.0,
    memory_mb: int = 512,
    stop_on_fail: bool = True,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT,
) -> CodeResult:
    """Grade ``code`` against ``tests``: each {"input": stdin, "output": expected stdout} or {"assert": src}
    (python statements run after the program, e.g. ``assert f(2) == 4``; the test passes only if all of
    them executed and held: see the module docstring)."""
    if not tests:
        raise ValueError("grade_code needs at least one test")
    if timeout <= 0 or memory_mb <= 0 or max_output_bytes <= 0:
        raise ValueError("timeout, memory_mb and max_output_bytes must be > 0")
    if code is None:
        return CodeResult(False, 0, len(tests), [{"status": "no code block"}])
    details, n_ok = [], 0
    for t in tests:
        if "assert" in t:
            r = _execute(code, str(t["assert"]), "", timeout, memory_mb, max_output_bytes)
            ok = r["status"] == "ok" and r["completed"]
            if r["status"] == "ok" and not r["completed"]:
                r["status"] = "exited_before_tests_finished"
        elif "input" in t and "output" in t:
            r = _execute(code, None, str(t["input"]), timeout, memory_mb, max_output_bytes)
            ok = r["status"] == "ok" and _same_output(r["stdout"], str(t["output"]))
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
