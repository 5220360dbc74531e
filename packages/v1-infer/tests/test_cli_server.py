"""`v1-infer select` / `generate` against a real server subprocess on a real socket (tests/fake_server.py):
dead server, server killed mid-run, --resume without re-sending, judgment cache, seeds, failed
generations, absurd replies, input validation with line numbers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from v1_infer.cli import main

FAKE = Path(__file__).with_name("fake_server.py")


class Server:
    def __init__(self, tmp: Path, name: str, *args: str):
        self.port_file = tmp / f"{name}.port"
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE), str(self.port_file), str(self.log), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while not self.port_file.exists():
            assert self.proc.poll() is None, "fake server exited at start"
            assert time.time() < deadline, "fake server did not start in 60 s"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port_file.read_text()}"

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def servers(tmp_path):
    started: list[Server] = []

    def start(name="srv", *args):
        s = Server(tmp_path, name, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def _dead_url() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _problems(n_small=3, n_big=2):
    """Small problems (2 candidates) finish in round 0; big ones (6) need several rounds.
    Quality tags are not in index order, so index order is never the right answer."""
    rows = []
    for p in range(n_small):
        rows.append({"id": f"s{p}", "problem": f"small {p}", "candidates": [f"x Q={2 + p}", f"y Q={8 - p}"]})
    for p in range(n_big):
        qs = [3, 9, 1, 7, 5, 2]
        rows.append(
            {"id": f"b{p}", "problem": f"big {p}", "candidates": [f"c{k} Q={q}" for k, q in enumerate(qs)]}
        )
    return rows


def _select(url, inp, out, *extra):
    return main(
        [
            "select",
            "--input",
            str(inp),
            "--out",
            str(out),
            "--backend",
            "openai",
            "--base-url",
            url,
            "--model",
            "fake",
            "--max-retries",
            "1",
            "--timeout",
            "5",
            "--concurrency",
            "1",
            *extra,
        ]
    )


def _records(out: Path, name: str = "selections.jsonl") -> list[dict]:
    """The JSONL the CLI wrote inside the --out folder."""
    f = out / name
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []


def test_dead_server_exits_nonzero_and_ranks_nothing(tmp_path, capsys):
    inp = _write(tmp_path / "in.jsonl", _problems(2, 1))
    out = tmp_path / "out"
    t0 = time.time()
    rc = _select(_dead_url(), inp, out, "--abort-after", "3")
    assert rc == 3
    assert _records(out) == []  # no ranking was invented from failed calls
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("v1-infer: error:")]
    assert len(line) == 1 and "0/3 problems" in line[0] and "ConnectError" in line[0]
    assert time.time() - t0 < 60


def test_http_500_and_404_are_backend_errors_not_ties(tmp_path, servers, capsys):
    for code in ("500", "404"):
        srv = servers(f"s{code}", "--status", code)
        inp = _write(tmp_path / f"in{code}.jsonl", _problems(1, 0))
        out = tmp_path / f"out{code}"
        assert _select(srv.url, inp, out) == 3
        assert _records(out) == []
        assert f"HTTP {code}" in capsys.readouterr().err


def test_skip_policy_ranks_on_judged_pairs_and_says_how_many(tmp_path, servers):
    srv = servers("ok")
    rows = [{"id": "p", "problem": "q", "candidates": ["a Q=3", "b Q=9", "c HUGE Q=1", "d Q=6"]}]
    inp = _write(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    # the absurd rating fails one call (a parse failure), never the round
    assert _select(srv.url, inp, out, "--on-parse-error", "skip") == 0
    (rec,) = _records(out)
    assert rec["parse_failures"] >= 1 and rec["backend_errors"] == 0
    assert rec["best"] == "b Q=9"


def test_server_killed_mid_run_keeps_finished_problems_and_resume_resends_nothing(tmp_path, servers):
    rows = _problems(3, 2)
    inp = _write(tmp_path / "in.jsonl", rows)
    # reference: an uninterrupted run
    ref_srv = servers("ref")
    ref_out = tmp_path / "ref"
    assert _select(ref_srv.url, inp, ref_out, "--seed", "5", "--no-cache") == 0
    total = len(ref_srv.requests())
    ref = {r["id"]: r for r in _records(ref_out)}
    assert len(ref) == 5 and total > 12

    # the first server dies (no reply, socket closed) on its 13th request: round 0 (3 + 2x3 calls) is done
    srv1 = servers("first", "--die-after", "12")
    out = tmp_path / "out"
    rc = _select(srv1.url, inp, out, "--seed", "5")
    srv1.proc.wait(timeout=10)
    assert rc == 3
    done = {r["id"] for r in _records(out)}
    assert done == {"s0", "s1", "s2"}  # every problem finished before the failure is in the file
    answered = srv1.requests()[:12]

    # a second run without --resume refuses to clobber the file
    assert _select(srv1.url, inp, out, "--seed", "5") == 2

    srv2 = servers("second")
    assert _select(srv2.url, inp, out, "--seed", "5", "--resume") == 0
    recs = _records(out)
    assert sorted(r["id"] for r in recs) == sorted(ref)
    for r in recs:  # same schedule, same seeds, same answers: the resumed run equals the reference
        assert r["order"] == ref[r["id"]]["order"] and r["best"] == ref[r["id"]]["best"]
    resent = {(q["prompt_sha"], q["seed"]) for q in srv2.requests()}
    assert not resent & {(q["prompt_sha"], q["seed"]) for q in answered}
    # nothing answered before was sent again: the second server got exactly the rest
    assert len(srv2.requests()) == total - len(answered)

    # a full re-run against the cache sends no request at all
    srv3 = servers("third")
    again = tmp_path / "again"
    assert _select(srv3.url, inp, again, "--seed", "5", "--cache", str(out / "cache.jsonl")) == 0
    assert srv3.requests() == []
    assert [r["order"] for r in _records(again)] == [ref[r["id"]]["order"] for r in _records(again)]


def test_no_seed_by_default_and_distinct_seeds_with_run_seed(tmp_path, servers):
    inp = _write(tmp_path / "in.jsonl", _problems(1, 1))
    srv = servers("a")
    assert _select(srv.url, inp, tmp_path / "o1", "--no-cache") == 0
    reqs = srv.requests()
    assert reqs and not any(q["has_seed"] for q in reqs)
    srv2 = servers("b")
    assert _select(srv2.url, inp, tmp_path / "o2", "--no-cache", "--seed", "3", "--budget", "3") == 0
    seeds = [q["seed"] for q in srv2.requests()]
    assert all(isinstance(s, int) for s in seeds)
    assert len(set(seeds)) == len(seeds)  # distinct per request, also for repeated comparisons


def test_generate_failures_fail_the_command_and_are_never_ranked(tmp_path, servers, capsys):
    inp = _write(tmp_path / "p.jsonl", [{"problem": "a"}, {"problem": "b"}])
    srv = servers("gen500", "--status", "500")
    out = tmp_path / "c"
    args = ["generate", "--input", str(inp), "--out", str(out), "--backend", "openai", "--model", "m"]
    args += ["--n", "3", "--max-retries", "0"]
    assert main([*args, "--base-url", srv.url]) == 3
    assert _records(out, "candidates.jsonl") == []
    assert "generations failed" in capsys.readouterr().err
    ok = servers("genok")
    assert main([*args, "--base-url", ok.url, "--resume"]) == 0
    recs = _records(out, "candidates.jsonl")
    assert [len(r["candidates"]) for r in recs] == [3, 3] and [r["line"] for r in recs] == [1, 2]
    # a file holding a failed generation is refused by select, naming the line
    bad = _write(
        tmp_path / "bad.jsonl",
        [{"problem": "q", "candidates": [{"text": "", "meta": {"error": "HTTP 500"}}]}],
    )
    assert _select(ok.url, bad, tmp_path / "x") == 2
    assert "bad.jsonl:1: candidate 0 is a failed generation" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content,message",
    [
        (b'{"problem": "q", "candidates": "abc"}\n', "in.jsonl:1: 'candidates' must be a list, got str"),
        (b'{"problem": "q", "candidates": ["a"]}\n{"problem": "q"}\n', "in.jsonl:2: missing 'candidates'"),
        (b'{"problem": "q", "candidates": [{"meta": {}}]}\n', "in.jsonl:1: candidate 0 has no string 'text'"),
        (b'{"problem": "q", "candidates": ["a", 3]}\n', "in.jsonl:1: candidate 1 must be a string"),
        (b'{"problem": "q", "candidates": ["a"]}\n\xff\xfe bad\n', "in.jsonl:2: not UTF-8"),
        (b'{"problem": "q", "candidates": ["a"]}\n{oops\n', "in.jsonl:2: invalid JSON"),
        (b'["q", ["a"]]\n', "in.jsonl:1: expected a JSON object"),
        (b'{"candidates": ["a"]}\n', "in.jsonl:1: missing 'problem'"),
        (b'{"problem": 7, "candidates": ["a"]}\n', "in.jsonl:1: 'problem' must be a string"),
        (b'{"problem": "q", "candidates": []}\n', "in.jsonl:1: 'candidates' is empty"),
    ],
)
def test_select_input_validation_names_the_line(tmp_path, capsys, content, message):
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(content)
    rc = _select(_dead_url(), inp, tmp_path / "out")
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()  # nothing sent, nothing written


@pytest.mark.slow
def test_ctrl_c_keeps_finished_problems_and_resume_completes(tmp_path, servers):
    import os
    import signal

    rows = _problems(3, 2)
    inp = _write(tmp_path / "in.jsonl", rows)
    srv = servers("slow", "--delay", "0.3")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "v1_infer.cli", "select", "--input", str(inp), "--out", str(out)]
    cmd += ["--backend", "openai", "--base-url", srv.url, "--model", "fake", "--concurrency", "1"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    deadline = time.time() + 300
    while not _records(out):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no problem finished in 300 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=120)
    err = proc.stderr.read().decode()
    assert rc == 130 and "interrupted; finished results were kept" in err, err[-2000:]
    kept = _records(out)  # every line is a whole JSON record
    assert 1 <= len(kept) < len(rows)
    assert _select(srv.url, inp, out, "--resume") == 0
    recs = _records(out)
    assert sorted(r["line"] for r in recs) == list(range(1, len(rows) + 1))
