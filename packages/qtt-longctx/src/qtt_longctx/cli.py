"""`qtt` / `qtt-longctx` console script (one program, two names): qTTT on local files, the sandbox,
FLOP accounting and the benchmark.

qtt run      --model DIR --data tasks.jsonl --schema longbench_v2 --methods in_context,qttt --out DIR
qtt sandbox  --task kv --lengths 16,64,256 --methods in_context,qttt,thinking,self_consistency
qtt make-sandbox --task kv --lengths 16,64 --out DIR
qtt flops    --model DIR | --config config.json  --context 32768 --steps 32 --span 128
qtt bench    [--scale smoke|cpu|full|gpu]

CLI style (issue 20.4, `paperworks_shared.cli`): `--out` is always a directory (the command names the
files inside it: results.jsonl, tasks.jsonl); `--device`, `--threads`, `--no-progress` on the commands
that evaluate; `--seed S` for one run. Every argument is validated at parse time or before any model is
loaded or trained; a user mistake prints one line `<prog>: error: ...` and exits 2 (`--debug` for a
traceback). Outputs are written atomically (temp file + rename). torch/transformers are imported inside
the commands, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from paperworks_shared.cli import (
    UserError,
    add_bench_command,
    add_debug_flag,
    add_runtime_args,
    apply_runtime_args,
    check_out_dir,
    choice_of,
    existing_dir,
    existing_file,
    float_range,
    int_list,
    int_range,
    list_of,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    require,
    run_cli,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROG = "qtt"  # also installed as `qtt-longctx`: the usage line names whichever was run
BENCH_NAME = "qtt-longctx"  # the `paperworks.benchmarks` entry point
RESULTS_FILE = "results.jsonl"
TASKS_FILE = "tasks.jsonl"
METHOD_NAMES = ("in_context", "qttt", "thinking", "self_consistency")  # = methods.METHODS (tested)
SCHEMA_NAMES = ("longbench_v2", "zeroscrolls", "qa", "sandbox")  # = eval.loaders.SCHEMAS (tested)
TASK_NAMES = ("kv", "txlog", "multihop")  # = sandbox.tasks.TASKS (tested)
SCALE_NAMES = ("smoke", "cpu", "full", "gpu")  # = sandbox.model.PRESETS (tested)
methods_list = list_of(choice_of(METHOD_NAMES))
edges_list = list_of(positive_int, min_len=0)
lr_type = float_range(0.0, 10.0)  # QTTConfig's range


def _config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("qTTT (paper App. D defaults)")
    g.add_argument("--steps", type=int_range(0, 100_000), default=None, help="qTTT steps (default 32)")
    g.add_argument("--span", type=positive_int, default=128, help="span length k (default 128)")
    g.add_argument("--lr", type=lr_type, default=1e-5, help="learning rate in [0, 10] (default 1e-5)")
    g.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    g.add_argument("--weight-decay", type=nonneg_float, default=0.01)
    g.add_argument("--grad-clip", type=positive_float, default=1.0)
    g.add_argument(
        "--mode", choices=["full", "lora"], default="full", help="full fp32 ΔW_Q or LoRA on q_proj"
    )
    g.add_argument("--lora-rank", type=positive_int, default=8)
    g.add_argument("--min-context", type=nonneg_int, default=0, help="skip adaptation below this many tokens")
    g.add_argument(
        "--budget", type=nonneg_int, default=None, help="extra decode-token budget B (default 2*steps*span)"
    )
    g.add_argument("--sc-samples", type=positive_int, default=4, help="self-consistency samples")
    g.add_argument("--seed", type=nonneg_int, default=0)


def _qtt_config(a):
    from .config import QTTConfig

    return QTTConfig(
        steps=32 if a.steps is None else a.steps,
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
    return thinking_equivalent(32 if a.steps is None else a.steps, a.span)


def _report(results, buckets, out: Path | None) -> None:
    from paperworks_shared.bench import markdown_table
    from paperworks_shared.files import atomic_write_text

    from .eval import summarize

    print(markdown_table(summarize(results, buckets)))
    if out:
        path = out / RESULTS_FILE
        atomic_write_text(path, "".join(json.dumps(asdict(r)) + "\n" for r in results))
        print(f"wrote {len(results)} rows to {path}")


def _out_dir(value) -> Path:
    """`--out` is a directory (issue 20.4); a file name from the old `--out results.jsonl` style is refused
    with a message instead of silently becoming a folder of that name."""
    p = Path(value)
    require(
        p.suffix.lower() not in (".jsonl", ".json"),
        f"--out {value}: --out is a directory now (the command writes {RESULTS_FILE} / {TASKS_FILE} inside "
        "it); pass the folder",
    )
    return check_out_dir(p)


def _check_common(a) -> None:
    """Cross-argument checks and output paths, before anything is loaded or trained."""
    if getattr(a, "out", None) is not None:
        a.out = _out_dir(a.out)
    if hasattr(a, "mode"):
        try:
            _qtt_config(a)
        except ValueError as e:
            raise UserError(str(e)) from None


def _load_user_model(path: Path):
    from paperworks_shared.models import load_model

    try:
        return load_model(path)
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # missing/corrupt config or weights
        msg = " ".join(str(e).split())[:300]
        raise UserError(f"cannot load the model in {str(path)!r}: {msg}") from None


def _load_data(path: Path, schema: str):
    from .eval import load_local

    try:
        return load_local(path, schema)
    except (ValueError, KeyError, TypeError) as e:  # bad JSON, missing fields
        msg = " ".join(str(e).split())[:300]
        raise UserError(f"cannot read {str(path)!r} as schema {schema!r}: {msg}") from None


def _check_fits(longest: int, model_positions: int, a, what: str) -> None:
    """The longest prompt plus what the methods decode after it must fit the model's positions."""
    extra = max(_budget(a), 0) + a.answer_tokens + 64  # thinking budget, answer, re-asked question
    require(
        longest + extra <= model_positions,
        f"{what}: the longest prompt ({longest} tokens) plus the decode budget ({extra}) exceeds the "
        f"model's {model_positions} positions; use shorter --lengths or a smaller --budget/--steps",
    )


def cmd_run(a) -> None:
    from .eval import evaluate

    _check_common(a)
    ds = _load_data(a.data, a.schema)  # cheap, before the model
    if a.limit:
        ds = ds.select(range(min(a.limit, len(ds))))
    device = apply_runtime_args(a)
    model, tok = _load_user_model(a.model)
    model.to(device)
    if a.eager:
        model.set_attn_implementation("eager")
    res = evaluate(
        model,
        tok,
        ds,
        a.schema,
        a.methods,
        _budget(a),
        _qtt_config(a),
        a.sc_samples,
        answer_tokens=a.answer_tokens,
        seed=a.seed,
        progress=not a.no_progress,
    )
    _report(res, a.buckets, a.out)


def _sandbox_tasks(a):
    from .sandbox import sandbox_dataset

    try:
        return sandbox_dataset(a.task, a.lengths, a.per_length, seed=a.data_seed)
    except ValueError as e:  # e.g. more records than the task has distinct keys
        raise UserError(f"--task {a.task} --lengths {','.join(map(str, a.lengths))}: {e}") from None


def _write_tasks(ds, path: Path) -> None:
    from paperworks_shared.files import atomic_path

    with atomic_path(path) as tmp:
        ds.to_json(str(tmp))


def cmd_sandbox(a) -> None:
    from .eval import evaluate
    from .sandbox import sandbox_model
    from .sandbox.model import PRESETS

    _check_common(a)
    tasks_path = a.out / TASKS_FILE if a.out else None
    ds = _sandbox_tasks(a)
    longest = max(len(r["context"]) + len(r["question"]) for r in ds) + 1  # byte tokens + BOS
    _check_fits(longest, PRESETS[a.scale].max_positions, a, f"--lengths {max(a.lengths)}")
    # the tasks go through the same loader as `qtt run --schema sandbox`; without --out into a private
    # temp dir (never a fixed name in the system temp dir: concurrent runs would clobber each other)
    with tempfile.TemporaryDirectory(prefix="qtt-sandbox-") as tmp:
        path = tasks_path or Path(tmp) / "tasks.jsonl"
        _write_tasks(ds, path)
        ds = _load_data(path, "sandbox")
    device = apply_runtime_args(a)
    model, tok, _ = sandbox_model(a.scale, progress=not a.no_progress)
    model.to(device)
    cfg = _qtt_config(a)
    res = evaluate(
        model,
        tok,
        ds,
        "sandbox",
        a.methods,
        _budget(a),
        cfg,
        a.sc_samples,
        answer_tokens=a.answer_tokens,
        seed=a.seed,
        progress=not a.no_progress,
    )
    lengths = sorted({r.length for r in res})
    _report(res, lengths, a.out)


def cmd_make_sandbox(a) -> None:
    a.out = _out_dir(a.out)
    ds = _sandbox_tasks(a)
    path = a.out / TASKS_FILE
    _write_tasks(ds, path)
    print(f"wrote {len(ds)} {a.task} tasks to {path} (load with --schema sandbox)")


def cmd_flops(a) -> None:
    from . import flops

    require(not (a.model and a.config), "give either --model or --config, not both")
    cfg = None
    src = a.model or a.config
    if src:
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(src, local_files_only=True)
            flops.Shape.from_config(cfg)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            msg = " ".join(str(e).split())[:300]
            raise UserError(f"cannot read a model config from {str(src)!r}: {msg}") from None
    require(a.span < a.context, f"--span {a.span} must be shorter than --context {a.context}")
    steps = a.steps
    out: dict[str, Any] = {
        "thinking_equivalent_eq_3_2": flops.thinking_equivalent(steps, a.span),
        "match_steps_for_budget": flops.match_steps(a.budget, a.span) if a.budget else None,
    }
    if cfg is not None:
        shape = flops.Shape.from_config(cfg)
        out["shape"] = asdict(shape)
        out["thinking_equivalent_exact_app_c"] = flops.thinking_equivalent_exact(
            shape, steps, a.span, a.context
        )
        out["qttt_request"] = flops.account(
            shape, a.context, steps, a.span, a.answer_tokens, spans="uniform"
        ).to_dict()
        out["qttt_request_app_c_upper_bound"] = flops.account(
            shape, a.context, steps, a.span, a.answer_tokens, spans="full"
        ).to_dict()
        think = out["thinking_equivalent_exact_app_c"]
        out["thinking_request"] = flops.account(shape, a.context, 0, 0, think + a.answer_tokens).to_dict()
    print(json.dumps(out, indent=1))


def prog_name(argv0: str | None = None) -> str:
    """The usage line names the script that was run (`qtt` or its alias `qtt-longctx`)."""
    name = Path(argv0 if argv0 is not None else sys.argv[0]).name
    return name if name in ("qtt", "qtt-longctx") else PROG


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="qTTT: query-only test-time training for long contexts "
        "(arXiv 2512.13898). Adapts only W_Q against a frozen KV cache; model restored after.",
    )
    add_debug_flag(p)
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="adapt + answer a local JSONL of long-context tasks with a local model")
    r.add_argument(
        "--model", required=True, type=existing_dir, help="folder with config.json + weights + tokenizer"
    )
    r.add_argument("--data", required=True, type=existing_file, help=".jsonl/.json file")
    r.add_argument("--schema", default="qa", choices=list(SCHEMA_NAMES))
    r.add_argument(
        "--methods",
        type=methods_list,
        default=["in_context", "qttt"],
        help="comma list of in_context,qttt,thinking,self_consistency",
    )
    r.add_argument("--answer-tokens", type=positive_int, default=16)
    r.add_argument(
        "--buckets", type=edges_list, default=[], help="comma list of context-length bucket edges (tokens)"
    )
    r.add_argument("--limit", type=nonneg_int, default=0, help="first N rows only (0: all)")
    r.add_argument("--eager", action="store_true", help="eager attention (needed for needle attention mass)")
    r.add_argument(
        "--out", default=None, help=f"output folder: per-example results go to {RESULTS_FILE} in it"
    )
    add_runtime_args(r)
    _config_args(r)
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("sandbox", help="synthetic tasks on the tiny sandbox model (trained once, cached)")
    s.add_argument("--task", default="kv", choices=list(TASK_NAMES))
    s.add_argument("--lengths", type=int_list, default=[16, 64, 256], help="haystack sizes (records)")
    s.add_argument("--per-length", type=positive_int, default=10)
    s.add_argument("--methods", type=methods_list, default=list(METHOD_NAMES))
    s.add_argument(
        "--scale",
        default="cpu",
        choices=list(SCALE_NAMES),
        help="sandbox model preset (trained once, cached)",
    )
    s.add_argument("--data-seed", type=nonneg_int, default=123)
    s.add_argument("--answer-tokens", type=positive_int, default=16)
    s.add_argument("--out", default=None, help=f"output folder: {RESULTS_FILE} and the tasks as {TASKS_FILE}")
    add_runtime_args(s)
    _config_args(s)
    s.set_defaults(fn=cmd_sandbox, span=32, lr=1e-3, steps=8)

    m = sub.add_parser(
        "make-sandbox", help="write sandbox tasks as a local JSONL (for `qtt run --schema sandbox`)"
    )
    m.add_argument("--task", default="kv", choices=list(TASK_NAMES))
    m.add_argument("--lengths", type=int_list, default=[16, 64, 256])
    m.add_argument("--per-length", type=positive_int, default=10)
    m.add_argument("--data-seed", type=nonneg_int, default=123)
    m.add_argument("--out", required=True, help=f"output folder: the tasks go to {TASKS_FILE} in it")
    m.set_defaults(fn=cmd_make_sandbox)

    f = sub.add_parser("flops", help="FLOP accounting: qTTT steps vs thinking tokens (Eq. 3.2, App. C)")
    f.add_argument("--model", type=existing_dir, default=None, help="model folder (reads config.json)")
    f.add_argument("--config", type=existing_path, default=None, help="a config.json folder/file")
    f.add_argument("--context", type=int_range(2, 1 << 40), default=32768)
    f.add_argument("--steps", type=int_range(0, 100_000), default=32)
    f.add_argument("--span", type=positive_int, default=128)
    f.add_argument("--budget", type=nonneg_int, default=None, help="thinking budget to convert into steps")
    f.add_argument("--answer-tokens", type=nonneg_int, default=512)
    f.set_defaults(fn=cmd_flops)

    add_bench_command(sub, BENCH_NAME)
    return p


def existing_path(text: str) -> Path:
    """An existing file or folder."""
    p = Path(text).expanduser()
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text!r}: no such file or directory")
    return p


def _main(argv: list[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    if hasattr(args, "func"):  # `bench` (paperworks_shared.cli.add_bench_command)
        return int(args.func(args) or 0)
    args.fn(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    prog = prog_name()
    return run_cli(lambda a: _main(a, prog), argv, prog=prog)


if __name__ == "__main__":
    sys.exit(main())
