"""The OpenAI-compatible client against real HTTP servers on 127.0.0.1 started by the tests: a scripted
responder for fault cases (slow answers, 429/500, malformed JSON, dropped connections) and the package's
own server around a tiny local transformers model."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from v1_infer import Candidate, ProblemFailed, TournamentConfig, V1Infer
from v1_infer.backends.base import SamplingParams
from v1_infer.backends.openai_compat import OpenAICompatGenerator
from v1_infer.judges.llm import LLMPairwiseJudge

GOOD = "reasoning...\n<rating_A>8</rating_A>\n<rating_B>3</rating_B>"


class Scripted:
    """Behaviour chosen by a keyword in the prompt; attempts counted per prompt."""

    def __init__(self):
        self.attempts: dict[str, int] = {}
        self.times: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def count(self, prompt):
        with self.lock:
            self.attempts[prompt] = self.attempts.get(prompt, 0) + 1
            self.times.setdefault(prompt, []).append(time.perf_counter())
            return self.attempts[prompt]


def _server(script: Scripted):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, code, body: bytes, headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = req["prompt"]
            k = script.count(prompt)
            ok = json.dumps(
                {
                    "choices": [{"index": i, "text": GOOD, "finish_reason": "stop"} for i in range(req["n"])],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7 * req["n"]},
                }
            ).encode()
            if "SLOW" in prompt:
                time.sleep(0.4)
            if "HANG" in prompt:
                time.sleep(3)
            if "E429" in prompt and k <= 2:
                return self._send(429, b'{"error": "rate limited"}', [("Retry-After", "0")])
            if "RETRYAFTER" in prompt and k == 1:
                return self._send(503, b'{"error": "overloaded"}', [("Retry-After", "0.6")])
            if "OVERFLOW" in prompt:
                return self._send(400, b"This model's maximum context length is 512 tokens; you asked 900")
            if "E500" in prompt and k == 1:
                return self._send(500, b"internal error")
            if "BADJSON" in prompt and k == 1:
                return self._send(200, b'{"choices": [ {"text": oops')
            if "NOCHOICES" in prompt:
                return self._send(200, b'{"object": "error"}')
            if "DROP" in prompt and k == 1:
                self.close_connection = True
                self.wfile.flush()
                import socket

                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if "E400" in prompt:
                return self._send(400, b'{"error": "bad"}')
            if "ALWAYS500" in prompt:
                return self._send(500, b"down")
            self._send(200, ok)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.fixture
def scripted():
    script = Scripted()
    srv = _server(script)
    yield f"http://127.0.0.1:{srv.server_address[1]}", script
    srv.shutdown()
    srv.server_close()


def _client(url, **kw):
    kw = {"timeout": 1.5, "max_retries": 3, "backoff": 0.01, "max_backoff": 0.05, "concurrency": 8, **kw}
    return OpenAICompatGenerator(url, "scripted", **kw)


@pytest.mark.parametrize(
    "kind,attempts", [("OK", 1), ("SLOW", 1), ("E429", 3), ("E500", 2), ("BADJSON", 2), ("DROP", 2)]
)
def test_fault_is_retried_until_success(scripted, kind, attempts):
    url, script = scripted
    out = _client(url).generate([f"{kind} prompt"], SamplingParams(n=2, max_tokens=4))
    assert len(out) == 1 and len(out[0]) == 2
    assert all(g.error is None and g.text == GOOD for g in out[0])
    assert out[0][0].prompt_tokens == 11 and out[0][0].completion_tokens == 7
    assert script.attempts[f"{kind} prompt"] == attempts


def test_permanent_failures_are_reported_not_lost(scripted):
    url, script = scripted
    c = _client(url, max_retries=2)
    prompts = ["ALWAYS500 a", "E400 b", "HANG c", "NOCHOICES d", "OK e"]
    out = c.generate(prompts, SamplingParams(max_tokens=4))
    assert len(out) == 5
    assert "failed after 3 attempts" in out[0][0].error and "HTTP 500" in out[0][0].error
    assert "not retried" in out[1][0].error and script.attempts["E400 b"] == 1
    assert "Timeout" in out[2][0].error
    assert "malformed" in out[3][0].error
    assert out[4][0].error is None
    assert c.stats["failures"] == 4


def test_concurrency_is_bounded(scripted):
    url, _ = scripted
    t0 = time.perf_counter()
    out = _client(url, concurrency=2).generate([f"SLOW {k}" for k in range(4)], SamplingParams(max_tokens=4))
    elapsed = time.perf_counter() - t0
    assert all(g[0].error is None for g in out)
    assert elapsed >= 0.75  # 4 slow requests, 2 at a time -> at least 2 x 0.4 s


def test_tournament_over_http_every_problem_completes_or_reports(scripted):
    url, _ = scripted
    judge = LLMPairwiseJudge(_client(url, max_retries=2), "math", max_tokens=8)
    problems = ["fine problem", "ALWAYS500 problem", "E429 problem", "DROP problem"]
    cands = [[Candidate(f"sol {k}") for k in range(4)] for _ in problems]
    res = V1Infer(judge, TournamentConfig(budget_multiplier=1.0)).rank_many(problems, cands)
    assert len(res) == 4
    assert res[0].errors == [] and res[0].parse_failures == 0 and res[0].calls == 4
    # a server error is a backend error: the problem fails (no winner), never ties or slot-A wins
    assert res[1].errors and res[1].parse_failures == 0 and res[1].backend_errors == res[1].calls == 2
    assert res[1].failed and "HTTP 500" in res[1].failed and res[1].pairs_judged == 0
    with pytest.raises(ProblemFailed, match="HTTP 500"):
        _ = res[1].best_index
    for r in (res[0], res[2], res[3]):
        assert r.calls == 4 and sorted(r.order) == [0, 1, 2, 3] and not r.failed and r.backend_errors == 0
    assert judge.backend_errors == 2 and judge.parse_failures == 0


def test_retry_after_is_honoured(scripted):
    url, script = scripted
    out = _client(url, backoff=0.01, max_backoff=5.0).generate(["RETRYAFTER x"], SamplingParams(max_tokens=4))
    assert out[0][0].error is None
    t = script.times["RETRYAFTER x"]
    assert len(t) == 2 and t[1] - t[0] >= 0.55  # the header said 0.6 s; own backoff would be ~0.01 s


def test_server_gone_stops_sending_after_abort_after_failures(scripted):
    url, script = scripted
    c = _client(url, max_retries=0, concurrency=1, abort_after=3)
    out = c.generate([f"ALWAYS500 {k}" for k in range(10)], SamplingParams(max_tokens=4))
    assert all(g[0].error for g in out)
    assert sum(script.attempts.values()) == 3  # 3 requests failed for good, then nothing more was sent
    assert c.stats["not_sent"] == 7 and sum("not sent" in g[0].error for g in out) == 7
    # with retries, requests interleave; the breaker still stops sending well before 10 x 3 attempts
    script.attempts.clear()
    c = _client(url, max_retries=2, concurrency=1, abort_after=3)
    out = c.generate([f"ALWAYS500 {k}" for k in range(10)], SamplingParams(max_tokens=4))
    assert all(g[0].error for g in out) and sum(script.attempts.values()) < 30 and c.stats["not_sent"] > 0


def test_context_overflow_is_a_named_backend_error(scripted):
    url, script = scripted
    out = _client(url).generate(["OVERFLOW p"], SamplingParams(max_tokens=4))
    assert "context overflow" in out[0][0].error and script.attempts["OVERFLOW p"] == 1


def test_real_tiny_model_behind_the_package_server():
    from paperworks_shared.models import byte_tokenizer, tiny_causal_lm
    from v1_infer.backends.hf import HFGenerator
    from v1_infer.serve import ServerThread, make_server

    hf = HFGenerator(tiny_causal_lm("llama", seed=0), byte_tokenizer(), batch_size=16, max_prompt_tokens=256)
    with ServerThread(make_server(hf, "tiny", batch_window=0.05)) as srv:
        client = OpenAICompatGenerator(srv.url, "tiny", concurrency=16, timeout=60)
        out = client.generate([f"prompt {k}" for k in range(6)], SamplingParams(n=2, max_tokens=5, seed=0))
        assert [len(g) for g in out] == [2] * 6
        assert all(g.error is None and g.completion_tokens <= 5 for gs in out for g in gs)
        assert max(srv.server.batcher.batches) > 1  # concurrent requests were micro-batched
        judge = LLMPairwiseJudge(client, "math", max_tokens=6)
        res = V1Infer(judge, TournamentConfig(budget_multiplier=1.0)).rank_many(
            ["What is 1+1?", "What is 2+2?"], [[f"answer {k}" for k in range(4)]] * 2
        )
        assert [r.calls for r in res] == [4, 4] and all(not r.errors for r in res)
        # a random model never writes rating tags: every call is a counted parse failure
        assert judge.parse_failures == judge.calls == 8
