"""transformers backend, the CLI, and the optional vLLM integration test."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from v1_infer.backends.base import SamplingParams
from v1_infer.cli import main


@pytest.fixture(scope="module")
def tiny():
    from paperworks_shared.models import byte_tokenizer, tiny_causal_lm

    return tiny_causal_lm("llama", seed=0), byte_tokenizer()


def test_hf_generator_batched_left_padded_matches_unbatched(tiny):
    from v1_infer.backends.hf import HFGenerator

    model, tok = tiny
    g = HFGenerator(model, tok, batch_size=8)
    prompts = ["short", "a much longer prompt than the first one"]
    greedy = SamplingParams(temperature=0.0, max_tokens=6)
    batched = g.generate(prompts, greedy)
    single = [g.generate([p], greedy)[0] for p in prompts]
    assert [b[0].text for b in batched] == [s[0].text for s in single]
    assert batched[0][0].prompt_tokens == len("short") + 1  # + BOS
    s1 = g.generate(prompts, SamplingParams(n=3, max_tokens=6, seed=1))
    s2 = g.generate(prompts, SamplingParams(n=3, max_tokens=6, seed=1))
    assert [x.text for x in s1[1]] == [x.text for x in s2[1]] and len(s1[1]) == 3


def test_vllm_backend_missing_gives_clear_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        from v1_infer.backends.vllm import VLLMGenerator

        with pytest.raises(ImportError, match=r"v1-infer\[vllm\]"):
            VLLMGenerator("x")
    else:
        pytest.skip("vLLM is installed here")


def test_cli_simulate(capsys, tmp_path):
    out = tmp_path / "sim"
    assert (
        main(
            [
                "simulate",
                "--problems",
                "20",
                "--methods",
                "v1,pointwise",
                "--budgets",
                "1,2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "V1 2x" in text and "pointwise" in text
    rows = json.loads((out / "simulate.json").read_text())
    assert {r["method"] for r in rows} >= {"V1 1x", "V1 2x"}


def test_cli_generate_and_select_with_hf_folder(tiny, tmp_path):
    from paperworks_shared.models import save_model

    model, tok = tiny
    folder = save_model(model, tok, tmp_path / "model")
    probs = tmp_path / "p.jsonl"
    probs.write_text(json.dumps({"id": "a", "problem": "What is 1+1?"}) + "\n")
    gen_dir = tmp_path / "gen"
    cands = gen_dir / "candidates.jsonl"
    assert (
        main(
            [
                "generate",
                "--input",
                str(probs),
                "--out",
                str(gen_dir),
                "--n",
                "3",
                "--backend",
                "hf",
                "--model",
                str(folder),
                "--max-tokens",
                "4",
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in cands.read_text().splitlines()]
    assert len(rows[0]["candidates"]) == 3
    ranked = tmp_path / "sel" / "selections.jsonl"
    assert (
        main(
            [
                "select",
                "--input",
                str(cands),
                "--out",
                str(ranked.parent),
                "--backend",
                "hf",
                "--model",
                str(folder),
                "--max-tokens",
                "4",
                "--budget",
                "1",
                "--audit",
            ]
        )
        == 0
    )
    r = json.loads(ranked.read_text())
    assert (
        r["id"] == "a" and sorted(r["order"]) == [0, 1, 2] and r["calls"] == 3 and len(r["comparisons"]) == 3
    )


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["select", "--input", str(tmp_path / "missing.jsonl"), "--model", "x"]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "x"}\n')
    assert main(["select", "--input", str(bad), "--model", str(tmp_path)]) == 2
    assert "bad.jsonl:1: missing 'candidates'" in capsys.readouterr().err
    assert main(["simulate", "--regime", "beta", "--methods", "nope", "--problems", "2"]) == 2
    assert "--methods" in capsys.readouterr().err


def _vllm_python():
    cand = os.environ.get("PAPERWORKS_VLLM_PYTHON") or str(
        Path(__file__).resolve().parents[3] / ".venv-vllm/bin/python"
    )
    return cand if cand and Path(cand).exists() else None


VLLM_START_S = float(os.environ.get("PAPERWORKS_VLLM_START_TIMEOUT", "1800"))
RATING_REGEX = r"<rating_A>[1-9]</rating_A>\n<rating_B>[1-9]</rating_B>"


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """A real vLLM OpenAI server (CPU build, tiny model). Start-up is polled for up to
    PAPERWORKS_VLLM_START_TIMEOUT seconds (default 1800: on the loaded shared 2-core machine it took 14 min)."""
    from paperworks_shared.models import byte_tokenizer, save_model, tiny_causal_lm

    if os.environ.get("PAPERWORKS_VLLM_URL"):  # a server started by hand (same tiny model recipe)
        import httpx

        url = os.environ["PAPERWORKS_VLLM_URL"].rstrip("/")
        name = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]

        class _Running:
            @staticmethod
            def poll():
                return None

        yield url, name, _Running(), lambda: "(external server: see its own log)"
        return
    tmp = tmp_path_factory.mktemp("vllm")
    # the vLLM CPU attention backend needs head_dim 64 (notes/vllm-cpu.md)
    model = tiny_causal_lm("llama", seed=0, hidden_size=128, num_attention_heads=2, num_key_value_heads=1)
    folder = save_model(model, byte_tokenizer(), tmp / "m")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(
        [
            _vllm_python(),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(folder),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-model-len",
            "2048",  # the paper's judge prompt is ~1k byte-level tokens
            "--dtype",
            "float32",
            "--gpu-memory-utilization",
            "0.2",
        ],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def tail() -> str:
        log.flush()
        return (tmp / "server.log").read_text(errors="replace")[-3000:]

    try:
        import httpx

        t0 = time.time()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited during start-up (rc {proc.returncode}); log tail:\n{tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() - t0 > VLLM_START_S:
                pytest.fail(
                    f"vLLM server not up after {VLLM_START_S:.0f} s (loaded machine? raise "
                    f"PAPERWORKS_VLLM_START_TIMEOUT); log tail:\n{tail()}"
                )
            time.sleep(2)
        yield f"http://127.0.0.1:{port}", str(folder), proc, tail
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
@pytest.mark.skipif(
    _vllm_python() is None,
    reason="no vLLM python: set PAPERWORKS_VLLM_PYTHON or run `make vllm-env` "
    "(recipe: shared/notes/vllm-cpu.md); vLLM is not installed in this environment",
)
@pytest.mark.parametrize("seeded", [False, True], ids=["unseeded", "seeded"])
def test_real_vllm_server_through_the_cli(vllm_server, tmp_path, capsys, seeded):
    """Transport + CLI against real vLLM, unseeded (default; 64 concurrent ~900-token judge prompts) and
    with per-request seeds; vLLM's structured outputs force the tag format so the tiny
    model's ratings are parsed (parse coverage of free-form replies is in test_cli_server.py)."""
    url, folder, proc, tail = vllm_server
    inp = tmp_path / "in.jsonl"
    rows = [
        {"id": p, "problem": f"What is {p}+{p}?", "candidates": [f"It is {p + k}." for k in range(6)]}
        for p in range(4)
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "selections.jsonl"
    argv = ["select", "--input", str(inp), "--out", str(out.parent), "--backend", "openai", "--base-url", url]
    argv += ["--model", folder, "--max-tokens", "64", "--concurrency", "64", "--timeout", "300", "--audit"]
    argv += [
        "--max-model-len",
        "2048",
        "--extra-body",
        json.dumps({"structured_outputs": {"regex": RATING_REGEX}}),
    ]
    if seeded:
        # per-request seeds; one request at a time, because vLLM's CPU build (0.32) dies on seeded requests
        # whose prompts get chunked ("CPU Generator does not use offset", reproduced with 64 concurrent
        # ~900-token judge prompts): then the CLI exits 3 naming the HTTP 500s (see README)
        argv += ["--seed", "7"]
        argv[argv.index("--concurrency") + 1] = "1"
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 0, f"{err[-2000:]}\nserver log:\n{tail()}"
    assert proc.poll() is None, f"vLLM crashed during the run:\n{tail()}"
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 4 and all(r["backend_errors"] == 0 and r["calls"] == 12 for r in recs)
    calls = [c for r in recs for c in r["comparisons"]]
    parsed = [c for c in calls if c["parsed"]]
    assert parsed, f"no parsed rating in {len(calls)} calls; first raw replies: {err[-1000:]}"
    assert all(1 <= c["rating_i"] <= 10 and 1 <= c["rating_j"] <= 10 for c in parsed)
