"""Issue 17 §4: every `v1-infer` subcommand's numeric and path arguments, fed bad values, exits 2 with
one message naming the problem, before any model is loaded or request sent."""

from __future__ import annotations

import json
import socket

import pytest

from v1_infer.cli import main


@pytest.fixture
def env(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"problem": "What is 2+2? " * 40, "candidates": ["4", "5"]}) + "\n")
    afile = tmp_path / "afile"
    afile.write_text("x")
    existing = tmp_path / "done"  # an --out folder that already holds a selection
    existing.mkdir()
    (existing / "selections.jsonl").write_text('{"line": 1, "problem": "x"}\n')
    clash = tmp_path / "clash"  # --out folder whose output file name is taken by a directory
    (clash / "selections.jsonl").mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    from paperworks_shared.models import byte_tokenizer

    tok = tmp_path / "tok"
    byte_tokenizer().save_pretrained(tok)
    return {
        "IN": str(inp),
        "DIR": str(tmp_path),
        "UNWRITABLE": str(afile / "out"),  # parent is a file
        "AFILE": str(afile),  # a file where a folder is expected
        "CLASH": str(clash),
        "EXISTING": str(existing),
        "URL": url,
        "TOK": str(tok),
        "MISSING": str(tmp_path / "missing.jsonl"),
    }


SEL = ["select", "--input", "IN", "--backend", "openai", "--base-url", "URL", "--model", "m"]
GEN = ["generate", "--input", "IN", "--backend", "openai", "--base-url", "URL", "--model", "m"]

TABLE = [
    # simulate
    (["simulate", "--n", "1"], "--n: 1 is out of range"),
    (["simulate", "--n", "abc"], "--n: 'abc' is not an integer"),
    (["simulate", "--budgets", "0"], "--budgets"),
    (["simulate", "--budgets", "1,-2"], "--budgets"),
    (["simulate", "--problems", "0"], "--problems: 0 is out of range"),
    (["simulate", "--regime", "1.5"], "--regime"),
    (["simulate", "--regime", "abc"], "--regime"),
    (["simulate", "--methods", "nope"], "--methods"),
    (["simulate", "--pos-bias", "nan"], "--pos-bias: 'nan' is not a finite number"),
    (["simulate", "--noise", "-1"], "--noise"),
    (["simulate", "--calibration", "inf"], "--calibration"),
    (["simulate", "--parse-failure-rate", "2"], "--parse-failure-rate"),
    (["simulate", "--seed", "-1"], "--seed"),
    (["simulate", "--problems", "2", "--out", "UNWRITABLE"], "--out"),
    (["simulate", "--problems", "2", "--out", "AFILE"], "--out"),
    # select: numbers
    ([*SEL, "--budget", "0"], "--budget: 0 is out of range"),
    ([*SEL, "--budget", "nan"], "--budget: 'nan' is not a finite number"),
    ([*SEL, "--min-degree", "-1"], "--min-degree"),
    ([*SEL, "--window", "0"], "--window"),
    ([*SEL, "--tau", "1.5"], "--tau"),
    ([*SEL, "--k", "0"], "--k"),
    ([*SEL, "--method", "nope"], "--method"),
    ([*SEL, "--position", "sideways"], "--position"),
    ([*SEL, "--on-parse-error", "ignore"], "--on-parse-error"),
    ([*SEL, "--on-backend-error", "tie"], "--on-backend-error"),
    ([*SEL, "--concurrency", "0"], "--concurrency"),
    ([*SEL, "--timeout", "0"], "--timeout"),
    ([*SEL, "--timeout", "-inf"], "--timeout"),
    ([*SEL, "--max-retries", "-1"], "--max-retries"),
    ([*SEL, "--batch-size", "0"], "--batch-size"),
    ([*SEL, "--max-tokens", "0"], "--max-tokens"),
    ([*SEL, "--max-model-len", "0"], "--max-model-len"),
    ([*SEL, "--temperature", "-1"], "--temperature"),
    ([*SEL, "--seed", "-5"], "--seed"),
    ([*SEL, "--abort-after", "-1"], "--abort-after"),
    ([*SEL, "--extra-body", "{oops"], "--extra-body: not valid JSON"),
    ([*SEL, "--extra-body", "[1]"], "--extra-body: expected a JSON object"),
    # select: paths and cross-argument checks
    (["select", "--input", "MISSING", "--model", "m"], "--input: "),
    (["select", "--input", "DIR", "--model", "m"], "not a file"),
    ([*SEL, "--out", "UNWRITABLE"], "--out"),
    ([*SEL, "--out", "AFILE"], "--out"),
    ([*SEL, "--out", "EXISTING"], "already holds selections.jsonl: pass --resume"),
    ([*SEL, "--resume"], "--resume needs --out DIR"),
    ([*SEL, "--out", "CLASH"], "selections.jsonl inside it is a directory"),
    ([*SEL, "--cache", "UNWRITABLE", "--out", "DIR/o"], "--cache"),
    ([*SEL, "--device", "gpu"], "--device"),
    ([*SEL, "--device", "cuda:x"], "--device"),
    ([*SEL, "--device", "cpu"], "only the hf backend places a model"),
    ([*SEL, "--threads", "0"], "--threads"),
    ([*SEL, "--threads", "two"], "--threads"),
    (["select", "--input", "IN", "--backend", "openai", "--model", "m"], "needs --base-url"),
    ([*SEL[:-4], "--base-url", "ftp://x", "--model", "m"], "must start with http"),
    (["select", "--input", "IN", "--model", "MISSING"], "not a local model folder"),
    ([*SEL, "--api-key-env", "V1_INFER_TEST_UNSET_KEY"], "V1_INFER_TEST_UNSET_KEY"),
    ([*SEL, "--tokenizer", "MISSING"], "--tokenizer"),
    ([*SEL, "--max-model-len", "512"], "--max-model-len needs a local tokenizer"),
    ([*SEL, "--max-model-len", "300", "--tokenizer", "TOK"], "in.jsonl:1: prompt of"),
    # generate
    ([*GEN, "--n", "0"], "--n"),
    ([*GEN, "--max-tokens", "-3"], "--max-tokens"),
    ([*GEN, "--out", "UNWRITABLE"], "--out"),
    ([*GEN, "--threads", "-1"], "--threads"),
    ([*GEN, "--max-model-len", "64", "--tokenizer", "TOK"], "does not fit --max-model-len 64"),
    (["generate", "--input", "MISSING", "--model", "m"], "no such file"),
    # pairrl
    (["pairrl", "--steps", "0"], "--steps"),
    (["pairrl", "--sft-steps", "-1"], "--sft-steps"),
    (["pairrl", "--lr", "nan"], "--lr"),
    (["pairrl", "--lr", "0"], "--lr"),
    (["pairrl", "--lam", "-1"], "--lam"),
    (["pairrl", "--seeds", "a,b"], "--seeds"),
    (["pairrl", "--seeds", "0"], "--seeds"),
    (["pairrl", "--seeds", "0,1"], "--seeds"),
    (["pairrl", "--seed", "-1"], "--seed"),
    (["pairrl", "--seeds", "2", "--seed", "1"], "--seeds N (seeds 0..N-1) and --seed S exclude each other"),
    (["pairrl", "--device", "tpu"], "--device"),
    (["pairrl", "--threads", "0"], "--threads"),
    (["pairrl", "--backend", "trl", "--device", "cpu"], "the trl backend places the model itself"),
    (["pairrl", "--modes", "pair,foo"], "--modes"),
    (["pairrl", "--problems-per-step", "0"], "--problems-per-step"),
    (["pairrl", "--eval-problems", "0"], "--eval-problems"),
    (["pairrl", "--budget", "0"], "--budget"),
    (["pairrl", "--save-every", "0"], "--save-every"),
    (["pairrl", "--backend", "jax"], "--backend"),
    (["pairrl", "--config", "MISSING"], "--config"),
    (["pairrl", "--save-every", "1"], "need an output folder (--out)"),
    (["pairrl", "--out", "UNWRITABLE"], "--out"),
    (["pairrl", "--out", "AFILE"], "--out"),
    # bench
    (["bench", "--scale", "huge"], "--scale"),
    (["bench", "--results", "UNWRITABLE"], "--results"),
]


@pytest.mark.parametrize("argv,message", TABLE, ids=[" ".join(a[:1] + a[-2:]) for a, _ in TABLE])
def test_bad_input_exits_2_with_one_clear_line(env, capsys, argv, message):
    def sub(x: str) -> str:
        for k, v in env.items():
            x = x.replace(k, v) if x.startswith(k) or x == k or x.startswith(k + "/") else x
        return x

    argv = [sub(a) for a in argv]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and sub(message) in last, last
    assert "Traceback" not in err


def test_bad_config_key_is_a_user_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 3\n")
    assert main(["pairrl", "--config", str(bad)]) == 2
    assert "unknown config keys ['stepz']" in capsys.readouterr().err
