"""A scripted OpenAI-compatible judge/generator server, run as a real subprocess by the CLI tests.

usage: python fake_server.py PORT_FILE LOG_FILE [--die-after N] [--status CODE]

- pairwise prompts: rates each submission by the ``Q=<int>`` tag in its text (first tag = slot A);
  a submission containing ``HUGE`` gets a 5,000-digit rating, one containing ``NOTAG`` no tags at all.
- pointwise prompts: rates the single ``Q=<int>``; generation prompts: ``n`` texts "answer Q=<k>".
- every request is appended (fsync) to LOG_FILE as {"prompt_sha", "seed", "has_seed"} *before* it is
  answered, so a test can count exactly what was sent.
- ``--die-after N``: the process exits abruptly (os._exit, no reply) on request N+1, like a killed server.
- ``--status CODE``: answer every request with that HTTP status (e.g. 500, 404).
- ``--delay S``: sleep S seconds before each answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Q = re.compile(r"Q=(\d+)")


def main() -> None:
    port_file, log_file = sys.argv[1], sys.argv[2]
    die_after = int(sys.argv[sys.argv.index("--die-after") + 1]) if "--die-after" in sys.argv else None
    status = int(sys.argv[sys.argv.index("--status") + 1]) if "--status" in sys.argv else 200
    delay = float(sys.argv[sys.argv.index("--delay") + 1]) if "--delay" in sys.argv else 0.0
    lock = threading.Lock()
    state = {"n": 0}

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, code: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._send(200, {"data": [{"id": "fake"}]})

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = req.get("prompt") or req["messages"][-1]["content"]
            with lock:
                state["n"] += 1
                if die_after is not None and state["n"] > die_after:
                    os._exit(137)
                rec = {
                    "prompt_sha": hashlib.sha256(prompt.encode()).hexdigest()[:16],
                    "seed": req.get("seed"),
                    "has_seed": "seed" in req,
                    "chat": "messages" in req,
                }
                with open(log_file, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            if delay:
                import time

                time.sleep(delay)
            if status != 200:
                return self._send(status, {"error": f"scripted {status}"})
            n = int(req.get("n", 1))
            if "<rating_A>" in prompt:
                subs = prompt.split("**Submission A**", 1)[-1]
                a_part, _, b_part = subs.partition("**Submission B**")
                texts = []
                for part in (a_part, b_part):
                    if "HUGE" in part:
                        texts.append("9" * 5000)
                    else:
                        m = Q.search(part)
                        texts.append(m.group(1) if m else "5")
                if "NOTAG" in subs:
                    text = "I cannot decide."
                else:
                    text = f"ok\n<rating_A>{texts[0]}</rating_A>\n<rating_B>{texts[1]}</rating_B>"
                outs = [text] * n
            elif "<rating>" in prompt:
                m = Q.search(prompt.split("Problem", 1)[-1])
                outs = [f"<rating>{m.group(1) if m else 5}</rating>"] * n
            else:
                outs = [f"answer Q={k % 10}" for k in range(n)]
            key = "message" if "messages" in req else "text"
            choices = [
                {"index": i, key: ({"content": t} if key == "message" else t), "finish_reason": "stop"}
                for i, t in enumerate(outs)
            ]
            self._send(200, {"choices": choices, "usage": {"prompt_tokens": 10, "completion_tokens": 5 * n}})

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, port_file)
    srv.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
