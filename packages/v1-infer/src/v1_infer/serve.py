"""A minimal OpenAI-compatible HTTP server around any `TextGenerator` (loopback by default).

Serves ``GET /v1/models``, ``POST /v1/completions`` and ``POST /v1/chat/completions``. Concurrent
requests arriving within ``batch_window`` seconds are generated in one batched call (micro-batching),
so a tournament round sent as many parallel HTTP requests still hits the model as one batch. Used by
the benchmark and the tests to exercise `OpenAICompatGenerator` against a real server and a real model.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .backends.base import SamplingParams, TextGenerator


class _Batcher:
    """Collects (prompt, params) requests for ``window`` seconds and runs them as one generate call."""

    def __init__(self, generator: TextGenerator, window: float):
        self.gen, self.window = generator, window
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.queue: list[dict] = []
        self.model_lock = threading.Lock()
        self.batches: list[int] = []

    def submit(self, prompt: str, params: SamplingParams):
        item: dict[str, Any] = {
            "prompt": prompt,
            "params": params,
            "done": threading.Event(),
            "out": None,
            "err": None,
        }
        with self.lock:
            self.queue.append(item)
        time.sleep(self.window)
        with self.model_lock:  # one generation at a time; whoever gets here first takes the whole queue
            with self.lock:
                batch, self.queue = self.queue, []
            groups: dict[SamplingParams, list[dict]] = {}
            for it in batch:
                groups.setdefault(it["params"], []).append(it)
            for params, items in groups.items():
                try:
                    outs = self.gen.generate([it["prompt"] for it in items], params)
                    for it, o in zip(items, outs):
                        it["out"] = o
                except Exception as e:  # reported to each waiting request as HTTP 500
                    for it in items:
                        it["err"] = f"{type(e).__name__}: {e}"
                for it in items:
                    it["done"].set()
            if batch:
                self.batches.append(len(batch))
        item["done"].wait()
        if item["err"]:
            raise RuntimeError(item["err"])
        return item["out"]


def make_server(
    generator: TextGenerator,
    model_name: str = "tiny",
    host: str = "127.0.0.1",
    port: int = 0,
    batch_window: float = 0.02,
    chat_template=None,
) -> ThreadingHTTPServer:
    """Build (not start) the server; ``port=0`` picks a free port (``server.server_address[1]``).

    ``chat_template``: callable(messages) -> prompt for the chat endpoint (default: join the contents).
    """
    batcher = _Batcher(generator, batch_window)
    to_prompt = chat_template or (lambda msgs: "\n".join(m.get("content", "") for m in msgs))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            try:
                n = int(self.headers.get("Content-Length", 0))
                req = json.loads(self.rfile.read(n) or b"{}")
                chat = self.path.rstrip("/") == "/v1/chat/completions"
                if not chat and self.path.rstrip("/") != "/v1/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                prompt = to_prompt(req["messages"]) if chat else req["prompt"]
                if not isinstance(prompt, str):
                    raise ValueError("prompt must be a string")
                params = SamplingParams(
                    n=int(req.get("n", 1)),
                    temperature=float(req.get("temperature", 1.0)),
                    top_p=float(req.get("top_p", 1.0)),
                    max_tokens=int(req.get("max_tokens", 16)),
                    seed=req.get("seed"),
                )
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
                return self._send(400, {"error": {"message": f"bad request: {e}"}})
            try:
                gens = batcher.submit(prompt, params)
            except RuntimeError as e:
                return self._send(500, {"error": {"message": str(e)}})
            if chat:
                choices = [
                    {
                        "index": k,
                        "message": {"role": "assistant", "content": g.text},
                        "finish_reason": g.finish_reason,
                    }
                    for k, g in enumerate(gens)
                ]
            else:
                choices = [
                    {"index": k, "text": g.text, "finish_reason": g.finish_reason} for k, g in enumerate(gens)
                ]
            usage = {
                "prompt_tokens": gens[0].prompt_tokens if gens else 0,
                "completion_tokens": sum(g.completion_tokens for g in gens),
            }
            self._send(
                200,
                {
                    "object": "chat.completion" if chat else "text_completion",
                    "model": model_name,
                    "choices": choices,
                    "usage": usage,
                },
            )

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.batcher = batcher  # type: ignore[attr-defined]
    return server


class ServerThread:
    """Context manager: run a server in a background thread; ``.url`` is its base URL."""

    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        if isinstance(host, bytes):  # socketserver types the address as str | bytes
            host = host.decode()
        return f"http://{host}:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
