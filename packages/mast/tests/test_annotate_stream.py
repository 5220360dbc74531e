"""`mast annotate` never loses finished work: streamed output, --resume, dead/killed servers, token cost,
bounded response bodies, an atomic completion cache, and the CLI bad-input table."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mast.annotate import Annotator, load_annotations
from mast.cache import CompletionCache
from mast.cli import main
from mast.judges import JudgeParams, OpenAICompatibleJudge, StubBehaviour, StubServer
from mast.judges.openai_compat import ResponseTooLargeError
from mast.traces import Trace, Turn


def _write_traces(path, n):
    with open(path, "w") as f:
        for i in range(n):
            msgs = [
                {"role": "user", "name": "planner", "content": f"task {i}: compute {i} + {i}"},
                {"role": "assistant", "name": "solver", "content": f"the answer is {2 * i}. TERMINATE"},
            ]
            f.write(json.dumps({"trace_id": f"t{i:02d}", "messages": msgs}) + "\n")
    return path


def _summary(err: str) -> dict:
    return next(json.loads(x) for x in reversed(err.splitlines()) if x.startswith("{"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ids(path):
    return [json.loads(x)["trace_id"] for x in open(path).read().splitlines() if x.strip()]


def test_dead_server_exits_nonzero_with_one_line(tmp_path, capsys):
    traces = _write_traces(tmp_path / "t.jsonl", 4)
    out = tmp_path / "a" / "annotations.jsonl"
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    rc = main(
        [
            "annotate",
            str(traces),
            "-o",
            str(out.parent),
            "--judge",
            url,
            "--model",
            "m",
            "--retries",
            "0",
            "--cache",
            "",
        ]
        + ["--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "mast annotate: error: 4 of 4 traces failed" in err and "--resume" in err
    assert "Traceback" not in err
    anns = load_annotations(out)  # every trace recorded with its error, in input order
    assert [a.trace_id for a in anns] == ["t00", "t01", "t02", "t03"]
    assert all(a.error and "JudgeError" in a.error for a in anns)


def test_abort_after_consecutive_failures(tmp_path, capsys):
    traces = _write_traces(tmp_path / "t.jsonl", 12)
    out = tmp_path / "a" / "annotations.jsonl"
    url = f"http://127.0.0.1:{_free_port()}/v1"
    args = ["annotate", str(traces), "-o", str(out.parent), "--judge", url, "--model", "m", "--retries", "0"]
    rc = main(args + ["--cache", "", "--quiet", "--concurrency", "1", "--max-consecutive-failures", "3"])
    err = capsys.readouterr().err
    assert rc == 1 and "9 not attempted" in err and "aborted after 3 traces in a row" in err
    assert len(_ids(out)) == 3  # the not-attempted traces are not written: a resume does them


@pytest.mark.slow
def test_killed_server_keeps_finished_and_resume_sends_only_the_rest(tmp_path, capsys):
    """Real subprocesses, real sockets: the stub is SIGKILLed mid-run; the output keeps every finished
    trace; --resume against a fresh server finishes the rest without re-sending finished requests."""
    n = 10
    traces = _write_traces(tmp_path / "t.jsonl", n)
    out = tmp_path / "a" / "annotations.jsonl"
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    def start_stub():
        p = subprocess.Popen(
            [sys.executable, "-m", "mast.cli", "stub-server", "--latency", "0.3"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        return p, p.stdout.readline().split("listening on", 1)[1].strip()

    stub, url = start_stub()
    base = ["annotate", str(traces), "-o", str(out.parent), "--model", "stub", "--cache", "", "--quiet"]
    base += ["--concurrency", "1", "--retries", "0"]
    rc = []
    try:
        # the annotator runs in this process (a thread); the server is a separate process we kill
        th = threading.Thread(target=lambda: rc.append(main([*base, "--judge", url])))
        th.start()
        deadline = time.time() + 120
        while time.time() < deadline and (not out.exists() or len(_ids(out)) < 3):
            time.sleep(0.02)
        stub.kill()  # the server dies mid-run
        stub.wait(timeout=10)
        th.join(timeout=120)
    finally:
        stub.kill()
    err = capsys.readouterr().err
    assert rc == [1], err
    assert "traces failed" in err
    kept = [a for a in load_annotations(out) if a.ok]
    assert 3 <= len(kept) < n  # finished before the kill: kept
    stub2, url2 = start_stub()
    try:
        rc2 = main([*base, "--judge", url2, "--resume"])
        import httpx

        sent = httpx.get(url2 + "/stats").json()["n_requests"]
    finally:
        stub2.kill()
    err = capsys.readouterr().err
    assert rc2 == 0, err
    assert sent == n - len(kept)  # finished traces were not re-sent
    anns = load_annotations(out)
    assert [a.trace_id for a in anns] == [f"t{i:02d}" for i in range(n)] and all(a.ok for a in anns)
    assert _summary(err)["resumed"] == len(kept)


def test_resume_counts_requests_and_retries_failed(tmp_path, capsys):
    traces = _write_traces(tmp_path / "t.jsonl", 6)
    out = tmp_path / "a" / "annotations.jsonl"
    with StubServer(StubBehaviour(style="terse")) as srv:
        args = ["annotate", str(traces), "-o", str(out.parent), "--judge", srv.base_url, "--model", "stub"]
        args += ["--cache", "", "--quiet"]
        assert main(args) == 0
        full = open(out).read().splitlines()
        assert srv.n_requests == 6
        # keep 2 finished, mark 1 as failed, drop 3, and tear the last line as a crash would
        rec = [json.loads(x) for x in full]
        rec[2]["error"] = "JudgeError: boom"
        out.write_text("".join(json.dumps(r) + "\n" for r in rec[:3]) + full[3][:25])
        capsys.readouterr()
        srv.reset_stats()
        assert main(args + ["--resume"]) == 0
        assert srv.n_requests == 4  # t02 (failed) + t03..t05; t00, t01 not re-sent
    s = _summary(capsys.readouterr().err)
    assert s["resumed"] == 2 and s["judge_calls"] == 4
    anns = load_annotations(out)
    assert [a.trace_id for a in anns] == [f"t{i:02d}" for i in range(6)] and all(a.ok for a in anns)


def test_resume_refuses_another_judge_model(tmp_path, capsys):
    traces = _write_traces(tmp_path / "t.jsonl", 2)
    out = tmp_path / "a" / "annotations.jsonl"
    base = ["annotate", str(traces), "-o", str(out.parent), "--judge", "stub", "--cache", "", "--quiet"]
    assert main(base) == 0
    with StubServer() as srv:
        rc = main(
            ["annotate", str(traces), "-o", str(out.parent), "--judge", srv.base_url, "--model", "other"]
            + ["--cache", "", "--quiet", "--resume"]
        )
        assert rc == 2 and srv.n_requests == 0
    assert "different model" in capsys.readouterr().err


def test_streamed_records_are_on_disk_before_the_run_ends(tmp_path):
    """on_result is called per finished trace; the CLI appends + fsyncs there."""
    tr = [Trace(f"s{i}", turns=[Turn("a", f"message {i} " * 5)]) for i in range(5)]
    seen = []
    with StubServer(StubBehaviour(latency_s=0.05)) as srv:
        ann = Annotator(OpenAICompatibleJudge(srv.base_url, "stub"), concurrency=2)
        res = ann.annotate(tr, on_result=lambda a: seen.append((a.trace_id, srv.n_requests)))
    assert sorted(i for i, _ in seen) == [f"s{i}" for i in range(5)]
    assert [a.trace_id for a in res] == [f"s{i}" for i in range(5)]
    assert seen[0][1] < 5  # the first record was handed over while requests were still to come


def test_token_and_cost_total(tmp_path, capsys):
    traces = _write_traces(tmp_path / "t.jsonl", 5)
    out = tmp_path / "a" / "annotations.jsonl"
    with StubServer(StubBehaviour(style="echo")) as srv:
        args = ["annotate", str(traces), "-o", str(out.parent), "--judge", srv.base_url, "--model", "stub"]
        args += ["--cache", str(tmp_path / "c"), "--quiet", "--concurrency", "1"]
        args += [
            "--price-input-per-1m",
            "2.5",
            "--price-output-per-1m",
            "10",
            "--price-cached-input-per-1m",
            "1.25",
        ]
        assert main(args) == 0
        server_prompt, server_cached = srv.prompt_tokens, srv.cached_tokens
    err = capsys.readouterr().err
    s = _summary(err)
    anns = load_annotations(out)
    comp = sum(a.usage["completion_tokens"] for a in anns)
    assert s["tokens_sent"] == {
        "prompt_tokens": server_prompt,
        "completion_tokens": comp,
        "cached_tokens": server_cached,
    }
    assert server_cached > 0  # the rubric prefix is reused: the cached price matters
    want = ((server_prompt - server_cached) * 2.5 + server_cached * 1.25 + comp * 10) / 1e6
    assert s["cost_usd"] == pytest.approx(want, abs=1e-6) and s["cost_usd"] > 0
    assert f"${want:.4f}" in err
    # a cached re-run sends nothing and costs nothing
    assert main(args + ["--overwrite"]) == 0
    s2 = _summary(capsys.readouterr().err)
    assert s2["judge_calls"] == 0 and s2["cost_usd"] == 0 and s2["tokens_sent"]["prompt_tokens"] == 0


class _BigHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    size = 3_000_000
    chunked = False

    def log_message(self, *a):
        return

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content = "y" * self.size
        body = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 65536):
                part = body[i : i + 65536]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.mark.parametrize("chunked", [False, True])
def test_response_body_is_bounded(chunked):
    handler = type("H", (_BigHandler,), {"chunked": chunked})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    try:
        judge = OpenAICompatibleJudge(url, "m", max_retries=3, max_response_bytes=100_000)

        async def go():
            try:
                return await judge.complete([{"role": "user", "content": "x"}], JudgeParams())
            finally:
                await judge.aclose()

        with pytest.raises(ResponseTooLargeError, match="exceeds the 100000-byte limit"):
            asyncio.run(go())
        assert judge.n_requests == 1  # not retried: the answer would be as large again
        big = OpenAICompatibleJudge(url, "m", max_response_bytes=10_000_000)

        async def go2():
            try:
                return await big.complete([{"role": "user", "content": "x"}], JudgeParams())
            finally:
                await big.aclose()

        assert len(asyncio.run(go2()).text) == 3_000_000
    finally:
        srv.shutdown()
        srv.server_close()


def test_completion_cache_concurrent_writers_never_collide(tmp_path):
    """Threads writing the same key at once: the old shared `<key>.tmp<pid>` name made renames fail
    (FileNotFoundError) and readers could see half-written files."""
    cache = CompletionCache(tmp_path / "c")
    key = "ab" + "0" * 62
    errors = []
    payload = {"text": "x" * 200_000, "model": "m"}

    def writer():
        try:
            for _ in range(40):
                cache.put(key, payload)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    def reader():
        for _ in range(200):
            v = cache.get(key)
            if v is not None and v != payload:
                errors.append("torn read")

    ts = [threading.Thread(target=writer) for _ in range(6)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert cache.get(key) == payload
    assert sorted(p.name for p in (tmp_path / "c" / "ab").iterdir()) == [f"{key}.json"]  # no temp left
    (tmp_path / "c" / "ab" / f"{key}.json").write_text('{"not": "a completion"}')
    assert cache.get(key) is None  # unreadable as a completion: a miss, not a crash


BAD_INPUTS = [
    (["annotate", "T", "-o", "O", "--judge", "stub", "--concurrency", "0"], "--concurrency"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--samples", "-1"], "--samples"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--temperature", "nan"], "--temperature"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--max-tokens", "abc"], "--max-tokens"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--timeout", "0"], "--timeout"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--retries", "-2"], "--retries"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--price-input-per-1m", "-1"], "--price-input-per-1m"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--max-response-bytes", "0"], "--max-response-bytes"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--format", "xml"], "--format"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--stub-style", "weird"], "--stub-style"),
    (["annotate", "T", "-o", "O", "--judge", "ftp://x"], "expected an http(s):// base URL"),
    (["annotate", "T", "-o", "O", "--judge", "http://127.0.0.1:1/v1"], "--model is required"),
    (["annotate", "T", "-o", "O", "--judge", "hf:/no/such/model"], "is not a model folder"),
    (
        [
            "annotate",
            "T",
            "-o",
            "O",
            "--judge",
            "http://h/v1",
            "--model",
            "m",
            "--api-key-env",
            "MAST_NO_SUCH_VAR",
        ],
        "MAST_NO_SUCH_VAR",
    ),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--resume", "--overwrite"], "exclude each other"),
    (["annotate", "MISSING", "-o", "O", "--judge", "stub"], "no such trace file"),
    (["annotate", "BADJSON", "-o", "O", "--judge", "stub"], "cannot load traces"),
    (["annotate", "LATIN1", "-o", "O", "--judge", "stub"], "cannot load traces"),
    (["annotate", "T", "-o", "NOTDIR/a", "--judge", "stub"], "is not writable"),
    (["annotate", "T", "-o", "NOTDIR", "--judge", "stub"], "exists and is not a directory"),
    (["annotate", "T", "-o", "CLASH", "--judge", "stub"], "annotations.jsonl inside it is a directory"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--prompt-pack", "/no/such/pack"], "--prompt-pack"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--few-shot"], "few_shot=True"),
    (["validate", "MISSING"], "No such file"),
    (["validate", "BADJSON"], "cannot"),
    (["normalize", "T", "-o", "NOTDIR/n"], "is not writable"),
    (["normalize", "T", "-o", "NOTDIR"], "exists and is not a directory"),
    (["agree", "T", "MISSING"], "no such file"),
    (["agree", "T", "T2"], "no trace_id in common"),
    (["agree", "T", "T", "--bootstrap", "-5"], "--bootstrap"),
    (["report", "MISSING"], "No such file"),
    (["report", "T", "--by", "colour"], "--by"),
    (["report", "ANN", "--out", "NOTDIR/r"], "is not writable"),
    (["report", "ANN", "--out", "NOTDIR"], "exists and is not a directory"),
    (["report", "ANN", "--out", "O", "--plot-format", "xyz"], "--plot-format"),
    (["detect", "MISSING"], "no such trace file"),
    (["stub-server", "--port", "70000"], "--port"),
    (["stub-server", "--prevalence", "1.5"], "--prevalence"),
    (["stub-server", "--fail-first", "429"], "--fail-first"),
    (["stub-server", "--host", "0.0.0.0"], "--host"),
    (["taxonomy", "--version", "v9"], "--version"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--device", "gpu0"], "--device"),
    (["annotate", "T", "-o", "O", "--judge", "stub", "--threads", "0"], "--threads"),
    (["bench", "--scale", "huge"], "--scale"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUTS, ids=[" ".join(a[:1] + [m]) for a, m in BAD_INPUTS])
def test_cli_bad_inputs_exit_2_with_one_line(argv, message, tmp_path, capsys):
    t = _write_traces(tmp_path / "t.jsonl", 2)
    t2 = tmp_path / "t2.jsonl"
    t2.write_text(json.dumps({"trace_id": "zz", "messages": [{"role": "user", "content": "x"}]}) + "\n")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"trace_id": "x", "messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    notdir = tmp_path / "plainfile"  # an output below a plain file cannot be created (also as root)
    notdir.write_text("x")
    (tmp_path / "dir").mkdir()
    ann = tmp_path / "ann" / "annotations.jsonl"
    if "ANN" in argv:
        assert (
            main(["annotate", str(t), "-o", str(ann.parent), "--judge", "stub", "--cache", "", "--quiet"])
            == 0
        )
        capsys.readouterr()
    subst = {
        "T": str(t),
        "T2": str(t2),
        "O": str(tmp_path / "o"),
        "CLASH": str(tmp_path / "clash"),
        "NOTDIR": str(notdir),
        "MISSING": str(tmp_path / "missing.json"),
        "BADJSON": str(bad),
        "LATIN1": str(latin),
        "DIR": str(tmp_path / "dir"),
        "ANN": str(ann),
    }
    (tmp_path / "clash" / "annotations.jsonl").mkdir(parents=True)
    args = [subst.get(x, x.replace("NOTDIR/", str(notdir) + "/")) for x in argv]
    rc = main(args + (["--cache", ""] if argv[0] == "annotate" else []))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "annotations.jsonl").exists()  # nothing was started


def test_cuda_device_without_cuda_is_one_line_error(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    t = _write_traces(tmp_path / "t.jsonl", 2)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    out = tmp_path / "o" / "annotations.jsonl"
    argv = [
        "annotate",
        str(t),
        "-o",
        str(out.parent),
        "--judge",
        f"hf:{model_dir}",
        "--device",
        "cuda",
        "--cache",
        "",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "Traceback" not in err
    assert not out.exists()


def test_help_is_light_and_stub_styles_agree():
    """`mast --help` builds the parser without importing httpx, numpy or the stub server (issue 20.4)."""
    import subprocess
    import sys

    from mast.cli import STYLES
    from mast.judges.stub import STYLES as STUB_STYLES

    assert STYLES == STUB_STYLES
    code = (
        "import sys; from mast.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "main(['annotate', '--help']) if False else None\n"
        "from mast.cli import build_parser; build_parser()\n"
        "print(sorted(m for m in ('httpx', 'numpy', 'torch', 'mast.judges.stub') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip().splitlines()[-1] == "[]"
