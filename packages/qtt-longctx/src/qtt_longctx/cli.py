"""`qtt` / `qtt-longctx` console script: run qTTT on local files, the sandbox, and FLOP accounting.

qtt run      --model DIR --data tasks.jsonl --schema longbench_v2 --methods in_context,qttt
qtt sandbox  --task kv --lengths 16,64,256 --methods in_context,qttt,thinking,self_consistency
qtt make-sandbox --task kv --lengths 16,64 --out tasks.jsonl
qtt flops    --model DIR | --config config.json  --context 32768 --steps 32 --span 128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("qTTT (paper App. D defaults)")
    g.add_argument("--steps", type=int, default=None, help="qTTT steps (default: budget / (2*span))")
    g.add_argument("--span", type=int, default=128, help="span length k (default 128)")
    g.add_argument("--lr", type=float, default=1e-5, help="learning rate (default 1e-5)")
    g.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--grad-clip", type=float, default=1.0)
    g.add_argument(
        "--mode", choices=["full", "lora"], default="full", help="full fp32 ΔW_Q or LoRA on q_proj"
    )
    g.add_argument("--lora-rank", type=int, default=8)
    g.add_argument("--min-context", type=int, default=0, help="skip adaptation below this many tokens")
    g.add_argument(
        "--budget", type=int, default=None, help="extra decode-token budget B (default 2*steps*span)"
    )
    g.add_argument("--sc-samples", type=int, default=4, help="self-consistency samples")
    g.add_argument("--seed", type=int, default=0)


def _qtt_config(a):
    from .config import QTTConfig

    return QTTConfig(
        steps=a.steps or 32,
        span_len=a.span,
        lr=a.lr,
        optimizer=a.optimizer,
        weight_decay=a.weight_decay,
        grad_clip=a.grad_clip,
        mode=a.mode,
        lora_rank=a.lora_rank,
        min_context=a.min_context,
        seed=a.seed,
    )


def _budget(a) -> int:
    from .flops import thinking_equivalent

    if a.budget is not None:
        return a.budget
    return thinking_equivalent(a.steps or 32, a.span)


def _methods(s: str) -> list[str]:
    from .methods import METHODS

    ms = [m.strip() for m in s.split(",") if m.strip()]
    bad = [m for m in ms if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown methods {bad}; choose from {list(METHODS)}")
    return ms


def _report(results, buckets, out: str | None) -> None:
    from paperworks_shared.bench import markdown_table

    from .eval import summarize

    print(markdown_table(summarize(results, buckets)))
    if out:
        with open(out, "w") as f:
            for r in results:
                f.write(json.dumps(asdict(r)) + "\n")
        print(f"wrote {len(results)} rows to {out}")


def cmd_run(a) -> None:
    import torch

    from paperworks_shared.models import load_model

    from .eval import evaluate, load_local

    torch.set_num_threads(a.threads)
    model, tok = load_model(a.model)
    if a.eager:
        model.set_attn_implementation("eager")
    ds = load_local(a.data, a.schema)
    if a.limit:
        ds = ds.select(range(min(a.limit, len(ds))))
    res = evaluate(
        model,
        tok,
        ds,
        a.schema,
        _methods(a.methods),
        _budget(a),
        _qtt_config(a),
        a.sc_samples,
        answer_tokens=a.answer_tokens,
        seed=a.seed,
    )
    _report(res, [int(x) for x in a.buckets.split(",") if x], a.out)


def cmd_sandbox(a) -> None:
    import torch

    from .eval import evaluate, load_local
    from .sandbox import sandbox_dataset, sandbox_model

    torch.set_num_threads(a.threads)
    model, tok, _ = sandbox_model(a.scale)
    ds = sandbox_dataset(a.task, [int(x) for x in a.lengths.split(",")], a.per_length, seed=a.data_seed)
    path = Path(a.out or "/tmp/qtt-sandbox.jsonl").with_suffix(".tasks.jsonl")
    ds.to_json(path)
    ds = load_local(path, "sandbox")
    cfg = _qtt_config(a)
    res = evaluate(model, tok, ds, "sandbox", _methods(a.methods), _budget(a), cfg, a.sc_samples, seed=a.seed)
    lengths = sorted({r.length for r in res})
    _report(res, lengths, a.out)


def cmd_make_sandbox(a) -> None:
    from .sandbox import sandbox_dataset

    ds = sandbox_dataset(a.task, [int(x) for x in a.lengths.split(",")], a.per_length, seed=a.data_seed)
    ds.to_json(a.out)
    print(f"wrote {len(ds)} {a.task} tasks to {a.out} (load with --schema sandbox)")


def cmd_flops(a) -> None:
    from . import flops

    if a.model:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(a.model, local_files_only=True)
    elif a.config:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(a.config, local_files_only=True)
    else:
        cfg = None
    steps = a.steps or 32
    out = {
        "thinking_equivalent_eq_3_2": flops.thinking_equivalent(steps, a.span),
        "match_steps_for_budget": flops.match_steps(a.budget, a.span) if a.budget else None,
    }
    if cfg is not None:
        shape = flops.Shape.from_config(cfg)
        out["shape"] = asdict(shape)
        out["thinking_equivalent_exact_app_c"] = flops.thinking_equivalent_exact(
            shape, steps, a.span, a.context
        )
        out["qttt_request"] = flops.account(shape, a.context, steps, a.span, a.answer_tokens).to_dict()
        think = out["thinking_equivalent_exact_app_c"]
        out["thinking_request"] = flops.account(shape, a.context, 0, 0, think + a.answer_tokens).to_dict()
    print(json.dumps(out, indent=1))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qtt",
        description="qTTT: query-only test-time training for long contexts "
        "(arXiv 2512.13898). Adapts only W_Q against a frozen KV cache; model restored after.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="adapt + answer a local JSONL of long-context tasks with a local model")
    r.add_argument("--model", required=True, help="folder with config.json + weights + tokenizer")
    r.add_argument("--data", required=True, help=".jsonl/.json file")
    r.add_argument("--schema", default="qa", choices=["longbench_v2", "zeroscrolls", "qa", "sandbox"])
    r.add_argument(
        "--methods", default="in_context,qttt", help="comma list of in_context,qttt,thinking,self_consistency"
    )
    r.add_argument("--answer-tokens", type=int, default=16)
    r.add_argument("--buckets", default="", help="comma list of context-length bucket edges (tokens)")
    r.add_argument("--limit", type=int, default=0)
    r.add_argument("--eager", action="store_true", help="eager attention (needed for needle attention mass)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", default=None, help="write per-example results here (.jsonl)")
    _config_args(r)
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("sandbox", help="synthetic tasks on the tiny sandbox model (trained once, cached)")
    s.add_argument("--task", default="kv", choices=["kv", "txlog", "multihop"])
    s.add_argument("--lengths", default="16,64,256", help="haystack sizes (records)")
    s.add_argument("--per-length", type=int, default=10)
    s.add_argument("--methods", default="in_context,qttt,thinking,self_consistency")
    s.add_argument("--scale", default="cpu", choices=["smoke", "cpu", "gpu"], help="sandbox model preset")
    s.add_argument("--data-seed", type=int, default=123)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", default=None)
    _config_args(s)
    s.set_defaults(fn=cmd_sandbox, span=32, lr=1e-3, steps=8)

    m = sub.add_parser(
        "make-sandbox", help="write sandbox tasks as a local JSONL (for `qtt run --schema sandbox`)"
    )
    m.add_argument("--task", default="kv", choices=["kv", "txlog", "multihop"])
    m.add_argument("--lengths", default="16,64,256")
    m.add_argument("--per-length", type=int, default=10)
    m.add_argument("--data-seed", type=int, default=123)
    m.add_argument("--out", required=True)
    m.set_defaults(fn=cmd_make_sandbox)

    f = sub.add_parser("flops", help="FLOP accounting: qTTT steps vs thinking tokens (Eq. 3.2, App. C)")
    f.add_argument("--model", default=None, help="model folder (reads config.json)")
    f.add_argument("--config", default=None, help="a config.json folder/file")
    f.add_argument("--context", type=int, default=32768)
    f.add_argument("--steps", type=int, default=32)
    f.add_argument("--span", type=int, default=128)
    f.add_argument("--budget", type=int, default=None, help="thinking budget to convert into steps")
    f.add_argument("--answer-tokens", type=int, default=512)
    f.set_defaults(fn=cmd_flops)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
