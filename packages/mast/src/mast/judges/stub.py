"""A deterministic stub judge -- in-process (`StubJudge`) or served on 127.0.0.1 (`StubServer`).

Responses are a pure function of the fenced trace text: labels come from sha256(trace, mode) against
a prevalence (optionally flipped with seeded noise), or from an explicit ``[[stub-labels: 1.1,2.6]]``
hint inside the trace. Styles exercise the parser (``terse``, ``echo`` = label-echo, ``markdown``,
``json``, ``missing_mode``, ``example_echo``, ``garbage``); the server adds latency, 429/500 fault
injection, an in-flight counter and a simulated block prefix cache (reported as ``cached_tokens`` like
vLLM automatic prefix caching), so scheduler, retry and prompt-layout effects are measurable offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..taxonomy import CODE_PROMPT_LABELS, MAST_V3, STALE_EXAMPLE_IDS
from .base import Completion, JudgeParams

STYLES = ("terse", "echo", "markdown", "json", "missing_mode", "example_echo", "garbage")
_FENCED = re.compile(r"<trace id=(\w+)>\n(.*)\n</trace id=\1>", re.DOTALL)
_HINT = re.compile(r"\[\[stub-labels:\s*([\d.,\s]*)\]\]")


def _u01(*parts) -> float:
    h = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def extract_trace(messages: list[dict]) -> str:
    """The fenced trace of the last user message (or its whole content when unfenced)."""
    user = [m for m in messages if m.get("role") == "user"]
    content = str(user[-1]["content"]) if user else ""
    m = _FENCED.search(content)
    return m.group(2) if m else content


@dataclass
class StubBehaviour:
    """How the stub answers. ``prevalence`` may be one float or a per-mode dict."""

    style: str = "terse"
    prevalence: float | dict[str, float] = 0.25
    noise: float = 0.0
    seed: int = 0
    latency_s: float = 0.0
    prefill_s_per_token: float = 0.0
    fail_first: dict[int, int] = field(default_factory=dict)  # {429: 1, 500: 1}: per-trace faults first
    reject_structured: bool = False  # answer HTTP 400 to requests carrying response_format (old servers)

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"unknown stub style {self.style!r}; choose one of {STYLES}")

    def labels_for(self, trace_text: str) -> dict[str, bool]:
        hint = _HINT.search(trace_text)
        if hint:
            on = {s.strip() for s in hint.group(1).split(",") if s.strip()}
            truth = {m: m in on for m in MAST_V3.ids}
        else:
            truth = {}
            for m in MAST_V3.ids:
                p = self.prevalence.get(m, 0.0) if isinstance(self.prevalence, dict) else self.prevalence
                truth[m] = _u01("truth", trace_text, m) < p
        if self.noise:
            truth = {m: v ^ (_u01("noise", self.seed, trace_text, m) < self.noise) for m, v in truth.items()}
        return truth

    def respond(self, messages: list[dict]) -> str:
        trace = extract_trace(messages)
        labels = self.labels_for(trace)
        yn = {m: "yes" if v else "no" for m, v in labels.items()}
        done = "no" if any(labels.values()) else "yes"
        summary = f"A. Stub summary of trace {hashlib.sha256(trace.encode()).hexdigest()[:8]}."
        if self.style == "json":
            return json.dumps(
                {
                    "summary": summary[3:],
                    "task_completed": done == "yes",
                    "failure_modes": {m: {"present": v, "evidence": ""} for m, v in labels.items()},
                }
            )
        if self.style == "garbage":
            return "I cannot determine the answer from this trace."
        if self.style in ("terse", "missing_mode", "example_echo"):
            lines = [f"{m} {yn[m]}" for m in MAST_V3.ids if not (self.style == "missing_mode" and m == "2.5")]
        elif self.style == "echo":
            lines = [f"{m} {CODE_PROMPT_LABELS[m]}: {yn[m]}" for m in MAST_V3.ids]
        else:  # markdown
            lines = [f"- **{m} {CODE_PROMPT_LABELS[m]}**: **{yn[m].capitalize()}**" for m in MAST_V3.ids]
        body = "\n".join([summary, f"B. {done}", "C."] + lines)
        if self.style == "example_echo":  # the stale 16-line example answer, echoed first
            stale = [f"{i} no" for i in STALE_EXAMPLE_IDS]
            body = "\n".join(["Example answer:", "A. x", "B. no", "C."] + stale) + "\n\nMy answer:\n" + body
        return f"@@\n{body}\n@@"


class StubJudge:
    """In-process deterministic judge (no HTTP)."""

    supports_structured_output = True

    def __init__(self, behaviour: StubBehaviour | None = None, model: str = "stub"):
        self.behaviour = behaviour or StubBehaviour()
        self.model = model
        self.endpoint = "stub://in-process"
        self.n_requests = 0
        self.messages_seen: list[list[dict]] = []

    async def complete(self, messages: list[dict], params: JudgeParams) -> Completion:
        self.n_requests += 1
        self.messages_seen.append(messages)
        t0 = time.perf_counter()
        if self.behaviour.latency_s:
            await asyncio.sleep(self.behaviour.latency_s)
        text = self.behaviour.respond(messages)
        n_in = sum(len(str(m.get("content", ""))) for m in messages) // 4
        return Completion(
            text,
            self.model,
            {"prompt_tokens": n_in, "completion_tokens": len(text) // 4, "cached_tokens": 0},
            time.perf_counter() - t0,
        )

    async def aclose(self) -> None:
        return None


class PrefixCacheSim:
    """Block-hash prefix cache like vLLM APC: chained hashes of fixed blocks of `block_chars` chars."""

    def __init__(self, block_chars: int = 64, max_blocks: int = 200_000):
        self.block_chars, self.max_blocks = block_chars, max_blocks
        self._blocks: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def lookup_and_insert(self, prompt: str) -> int:
        """Number of leading chars served from cache; inserts the prompt's full blocks."""
        h = hashlib.sha256()
        hit_chars, missed = 0, False
        with self._lock:
            for i in range(0, len(prompt) - self.block_chars + 1, self.block_chars):
                h.update(prompt[i : i + self.block_chars].encode())
                key = h.copy().digest()
                if not missed and key in self._blocks:
                    hit_chars += self.block_chars
                else:
                    missed = True
                    self._blocks[key] = None
            while len(self._blocks) > self.max_blocks:
                self._blocks.pop(next(iter(self._blocks)))
        return hit_chars


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = (
        True  # headers and body go out in separate writes: avoid 40 ms delayed-ACK stalls
    )
    server: _StubHTTPServer

    def log_message(self, *args):  # quiet
        return

    def _send(self, code: int, obj: dict, headers: dict | None = None):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.server.model, "object": "model"}]})
        elif self.path.rstrip("/").endswith("/stats"):
            self._send(200, self.server.stats())
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/").endswith("/stats/reset"):  # returns the stats *before* the reset
            before = srv.stats()
            srv.reset()
            self._send(200, before)
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": f"no route {self.path}"})
            return
        try:
            req = json.loads(body)
            messages = req["messages"]
        except (json.JSONDecodeError, KeyError, TypeError):
            self._send(400, {"error": "body must be JSON with 'messages'"})
            return
        if srv.behaviour.reject_structured and "response_format" in req:
            self._send(400, {"error": {"message": "response_format is not supported by this server"}})
            return
        code, retry_after = srv.enter(messages)
        try:
            if code is not None:
                self._send(
                    code,
                    {"error": {"message": f"stub fault {code}", "code": code}},
                    {"Retry-After": str(retry_after)} if code == 429 else None,
                )
                return
            b = srv.behaviour
            prompt = "".join(f"<{m.get('role')}>{m.get('content')}" for m in messages)
            hit = srv.prefix_cache.lookup_and_insert(prompt)
            prompt_tokens, cached = len(prompt) // 4, hit // 4
            time.sleep(b.latency_s + b.prefill_s_per_token * (prompt_tokens - cached))
            text = b.respond(messages)
            srv.record(messages, prompt_tokens, cached)
            self._send(
                200,
                {
                    "id": "stub",
                    "object": "chat.completion",
                    "model": srv.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(text) // 4,
                        "total_tokens": prompt_tokens + len(text) // 4,
                        "prompt_tokens_details": {"cached_tokens": cached},
                    },
                },
            )
        finally:
            srv.leave()


class _StubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, addr, behaviour: StubBehaviour, model: str, max_requests: int):
        super().__init__(addr, _Handler)
        self.behaviour, self.model, self.max_requests = behaviour, model, max_requests
        self.prefix_cache = PrefixCacheSim()
        self._lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.n_requests = 0
        self.status_counts: dict[int, int] = {}
        self.fault_counts: dict[str, int] = {}
        self.system_messages: list[str] = []
        self.user_messages: list[str] = []
        self.prompt_tokens = self.cached_tokens = 0

    def enter(self, messages) -> tuple[int | None, int]:
        with self._lock:
            self.n_requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.n_requests > self.max_requests:
                self.status_counts[503] = self.status_counts.get(503, 0) + 1
                return 503, 0
            key = hashlib.sha256(extract_trace(messages).encode()).hexdigest()
            seen = self.fault_counts.get(key, 0)
            self.fault_counts[key] = seen + 1
            for code, n in sorted(self.behaviour.fail_first.items(), key=lambda kv: kv[0]):
                if seen < n:
                    self.status_counts[code] = self.status_counts.get(code, 0) + 1
                    return code, 0
                seen -= n
            self.status_counts[200] = self.status_counts.get(200, 0) + 1
            return None, 0

    def reset(self):
        self.prefix_cache = PrefixCacheSim()
        with self._lock:
            self.in_flight = self.max_in_flight = self.n_requests = 0
            self.status_counts, self.fault_counts = {}, {}
            self.system_messages, self.user_messages = [], []
            self.prompt_tokens = self.cached_tokens = 0

    def leave(self):
        with self._lock:
            self.in_flight -= 1

    def record(self, messages, prompt_tokens, cached):
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.cached_tokens += cached
            if len(self.system_messages) < 10_000:
                self.system_messages += [str(m["content"]) for m in messages if m.get("role") == "system"]
                self.user_messages += [str(m["content"]) for m in messages if m.get("role") == "user"]

    def stats(self) -> dict:
        with self._lock:
            return {
                "n_requests": self.n_requests,
                "max_in_flight": self.max_in_flight,
                "status_counts": {str(k): v for k, v in self.status_counts.items()},
                "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens,
            }


class StubServer:
    """An OpenAI-compatible stub on 127.0.0.1 in a background thread. Use as a context manager.

    ``base_url`` is ``http://127.0.0.1:<port>/v1``; only loopback hosts are accepted. After
    ``max_requests`` requests it answers 503 (a runaway client loop stays bounded).
    """

    def __init__(
        self,
        behaviour: StubBehaviour | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "stub",
        max_requests: int = 1_000_000,
    ):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the stub server binds to loopback only, not {host!r}")
        self.behaviour = behaviour or StubBehaviour()
        self.httpd = _StubHTTPServer((host, port), self.behaviour, model, max_requests)
        host_, port_ = self.httpd.server_address[:2]
        self.host: str = host_.decode() if isinstance(host_, bytes) else str(host_)
        self.port: int = int(port_)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> StubServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def reset_stats(self) -> None:
        self.httpd.reset()

    def __getattr__(self, name):  # stats passthrough: srv.n_requests, srv.max_in_flight, ...
        if name in (
            "n_requests",
            "max_in_flight",
            "status_counts",
            "system_messages",
            "user_messages",
            "prompt_tokens",
            "cached_tokens",
        ):
            return getattr(self.httpd, name)
        raise AttributeError(name)

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
