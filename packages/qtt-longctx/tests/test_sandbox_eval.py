"""Sandbox tasks, the local-file loaders, the four methods and the CLI."""

import json
import random
import re

import pytest
import torch

from paperworks_shared.models import byte_tokenizer, tiny_causal_lm
from qtt_longctx import QTTConfig
from qtt_longctx.cli import main
from qtt_longctx.eval import evaluate, load_local, summarize
from qtt_longctx.methods import answer
from qtt_longctx.sandbox import make_example, sandbox_dataset


@pytest.mark.parametrize("task", ["kv", "txlog", "multihop"])
def test_sandbox_answers_are_in_the_needle(task):
    rng = random.Random(0)
    for n in (4, 16, 64):
        ex = make_example(task, n, rng)
        needle = ex["context"][ex["needle_start"] : ex["needle_end"]]
        key = ex["question"].strip()[1:]
        assert len(key) == 2 and needle.endswith(ex["answer"])
        writes = [m.start() for m in re.finditer(rf"(?<![?a-p]){key}(?=\d)", ex["context"])]
        if task == "kv":  # keys are unique: exactly one write of the asked key
            assert needle == f"{key}{ex['answer']}" and writes == [ex["needle_start"]]
        if task == "txlog":  # the needle is the *last* write of the asked account
            assert writes[-1] == ex["needle_start"]
        if task == "multihop":
            assert f"{key}{needle[:2]}" in ex["context"]


def test_sandbox_dataset_grows_haystack_only():
    ds = sandbox_dataset("kv", [8, 64], per_length=3, seed=1)
    lens = [len(r["context"]) for r in ds]
    assert len(ds) == 6 and max(lens[:3]) < min(lens[3:])
    with pytest.raises(ValueError, match="unknown sandbox task"):
        sandbox_dataset("bogus", [8], 1)


def test_longbench_loader_and_errors(tmp_path):
    p = tmp_path / "lb.jsonl"
    rows = [dict(_id="x", context="abc " * 5, question="q?", choice_A="a", choice_B="b", answer="B")]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_local(p, "longbench_v2")
    assert ds[0]["choices"] == ["a", "b"] and ds[0]["answer"] == "B"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"context": "c"}))
    with pytest.raises(ValueError, match="lacks"):
        load_local(bad, "longbench_v2")
    with pytest.raises(ValueError, match="schema"):
        load_local(p, "nope")


@pytest.fixture(scope="module")
def eager_model():
    return tiny_causal_lm("llama", seed=0, attn_implementation="eager")


def test_methods_run_and_vote(eager_model):
    ids = torch.tensor([[257] + list(b"ab=1 cd=2 ef=3 gh=4 ab=1 cd=2\n?cd=")])
    digits = list(range(48, 58))
    cfg = QTTConfig(span_len=8, lr=1e-2)
    for method in ("in_context", "qttt", "thinking", "self_consistency"):
        a = answer(
            eager_model,
            ids,
            method,
            budget_tokens=32,
            config=cfg,
            candidates=digits,
            reask_ids=list(b"\n?cd="),
            needle_positions=[6, 7, 8, 9],
            sc_samples=3,
        )
        assert a.prediction in digits and 0 <= a.needle_mass <= 1
        if method == "qttt":
            assert len(a.extra["losses"]) == 2  # 32 / (2 * 8)
        if method == "self_consistency":
            assert len(a.extra["votes"]) == 3 and a.extra["think_tokens"] == 10
            assert a.extra["votes"].count(a.prediction) == max(
                a.extra["votes"].count(v) for v in a.extra["votes"]
            )


def test_in_context_equals_plain_argmax(eager_model):
    ids = torch.tensor([[257] + list(b"ab=1 cd=2 ef=3\n?ef=")])
    with torch.no_grad():
        ref = int(torch.argmax(eager_model(ids).logits[0, -1]))
    free = answer(eager_model, ids, "in_context", budget_tokens=0, answer_tokens=3).prediction
    assert len(free) == 3 and free[0] == ref  # free-form: the greedy token tuple
    digits = list(range(48, 58))
    picked = answer(eager_model, ids, "in_context", budget_tokens=0, candidates=digits).prediction
    with torch.no_grad():
        assert picked == digits[int(torch.argmax(eager_model(ids).logits[0, -1, digits]))]


def test_harness_on_sandbox_file(tmp_path, eager_model):
    assert (
        main(
            ["make-sandbox", "--task", "kv", "--lengths", "4,8", "--per-length", "2", "--out", str(tmp_path)]
        )
        == 0
    )
    ds = load_local(tmp_path / "tasks.jsonl", "sandbox")
    res = evaluate(
        eager_model,
        byte_tokenizer(),
        ds,
        "sandbox",
        ["in_context", "qttt"],
        budget_tokens=32,
        config=QTTConfig(span_len=8, lr=1e-3),
        progress=False,
    )
    assert len(res) == 8 and all(0 <= r.needle_mass <= 1 for r in res)
    summary = summarize(res, [40, 1000])
    assert {r["method"] for r in summary} == {"in_context", "qttt"}
    assert sum(r["n"] for r in summary) == 8


def test_cli_flops(capsys, tmp_path):
    assert main(["flops", "--steps", "32", "--span", "128", "--budget", "8192"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["thinking_equivalent_eq_3_2"] == 8192 and out["match_steps_for_budget"] == 32
    tiny_causal_lm("qwen3").config.save_pretrained(tmp_path)
    assert main(["flops", "--config", str(tmp_path), "--context", "4096"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["qttt_request"]["n_steps"] == 32 and out["thinking_equivalent_exact_app_c"] > 0


def test_cli_help_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for sub in ("run", "sandbox", "make-sandbox", "flops", "bench"):
        assert sub in text


def test_cli_run_on_local_model_and_file(tmp_path, capsys):
    from paperworks_shared.models import save_model

    model_dir = save_model(tiny_causal_lm("qwen3", seed=0), byte_tokenizer(), tmp_path / "m")
    main(
        [
            "make-sandbox",
            "--task",
            "txlog",
            "--lengths",
            "6",
            "--per-length",
            "2",
            "--out",
            str(tmp_path / "d"),
        ]
    )
    data = tmp_path / "d" / "tasks.jsonl"
    out = tmp_path / "r"
    argv = [
        "run",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--schema",
        "sandbox",
        "--eager",
        "--methods",
        "in_context,qttt",
        "--steps",
        "2",
        "--span",
        "8",
        "--lr",
        "1e-3",
        "--out",
        str(out),
    ]
    assert main(argv + ["--device", "cpu", "--threads", "1", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["method"] for r in rows} == {"in_context", "qttt"}
    assert "accuracy" in capsys.readouterr().out
