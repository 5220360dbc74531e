"""``v1-infer`` console script: simulate, select, generate, bench."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _read_jsonl(path: str) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"input file not found: {path}")
    rows = []
    for k, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path}:{k}: invalid JSON ({e})") from e
    return rows


def _write_jsonl(path: str, rows) -> None:
    out = sys.stdout if path == "-" else open(path, "w")
    try:
        for r in rows:
            out.write(json.dumps(r, default=str) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


def _add_backend(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument(
        "--backend",
        choices=["hf", "vllm", "openai"],
        default="hf",
        help="hf = local transformers folder (default); vllm = in-process vLLM; openai = any "
        "OpenAI-compatible server (vLLM, SGLang)",
    )
    g.add_argument(
        "--model", required=True, help="model folder (hf), model path/name (vllm) or served name (openai)"
    )
    g.add_argument("--base-url", help="server URL for --backend openai, e.g. http://127.0.0.1:8000")
    g.add_argument("--chat", action="store_true", help="wrap prompts in the chat template / chat endpoint")
    g.add_argument("--concurrency", type=int, default=64, help="max parallel HTTP requests (openai)")
    g.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds (openai)")
    g.add_argument("--batch-size", type=int, default=16, help="generation batch size (hf)")
    g.add_argument("--max-tokens", type=int, default=1024, help="max new tokens per call")
    g.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampling temperature (default: paper's 1.0 for math, 0.6 for code)",
    )
    g.add_argument("--seed", type=int, default=0)


def _generator(a):
    from .backends.factory import make_generator

    return make_generator(
        a.backend,
        a.model,
        base_url=a.base_url,
        batch_size=a.batch_size,
        concurrency=a.concurrency,
        timeout=a.timeout,
        chat=a.chat,
    )


def cmd_simulate(a) -> int:
    from paperworks_shared.bench import markdown_table

    from .simulation import default_methods, run_study

    budgets = [float(b) if "." in b else int(b) for b in a.budgets.split(",")]
    specs = default_methods(tuple(budgets))
    if a.methods:
        want = set(a.methods.split(","))
        specs = [s for s in specs if s.method in want]
        if not specs:
            raise SystemExit(
                f"--methods matched nothing; available: {sorted({s.method for s in default_methods()})}"
            )
    regime = a.regime if a.regime == "beta" else float(a.regime)
    judge = {
        "position_bias": a.pos_bias,
        "noise": a.noise,
        "calibration": a.calibration,
        "parse_failure_rate": a.parse_failure_rate,
    }
    rows = run_study(
        a.problems, a.n, regime, specs, seed=a.seed, judge_kwargs=judge, wrong_answers=a.wrong_answers
    )
    cols = [
        "method",
        "accuracy",
        "se",
        "gap_closure",
        "calls",
        "rounds",
        "in_tokens_k",
        "out_tokens_k",
        "overhead_ms",
    ]
    print(markdown_table(rows, cols))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


def cmd_select(a) -> int:
    from .config import TournamentConfig
    from .driver import V1Infer
    from .judges.llm import LLMPairwiseJudge, LLMPointwiseJudge
    from .types import Candidate

    rows = _read_jsonl(a.input)
    problems, cand_lists = [], []
    for k, r in enumerate(rows):
        if "problem" not in r or "candidates" not in r:
            raise SystemExit(f"{a.input} line {k + 1}: needs 'problem' and 'candidates' fields")
        problems.append(str(r["problem"]))
        cand_lists.append(
            [
                Candidate(c) if isinstance(c, str) else Candidate(c["text"], c.get("meta", {}))
                for c in r["candidates"]
            ]
        )
    gen = _generator(a)
    cfg = TournamentConfig(
        budget_multiplier=a.budget,
        position=a.position,
        on_parse_error=a.on_parse_error,
        min_degree=a.min_degree,
        window=a.window,
        tau=a.tau,
        seed=a.seed,
    )
    kw = dict(temperature=a.temperature, max_tokens=a.max_tokens, seed=a.seed)
    judge = LLMPairwiseJudge(gen, a.task, **kw)
    pjudge = LLMPointwiseJudge(gen, a.task, **kw)
    extra = {"k": a.k} if a.method == "knockout" else {}
    if a.method == "majority":
        from .graders.math import canonical_answer, extract_answer

        for cs in cand_lists:
            for c in cs:
                c.meta.setdefault("answer", extract_answer(c.text))
        extra = {"answer_key": canonical_answer}
    res = V1Infer(judge, cfg, point_judge=pjudge, method=a.method, **extra).rank_many(
        problems, cand_lists, progress=True
    )
    out = []
    for r, row, cs in zip(res, rows, cand_lists):
        d = r.to_dict()
        if not a.audit:
            d.pop("comparisons")
        d["id"] = row.get("id")
        d["problem"] = row["problem"]
        d["best"] = cs[r.best_index].text if cs else None
        out.append(d)
    _write_jsonl(a.out, out)
    print(
        f"ranked {len(out)} problems; parse-failure rate {judge.parse_failure_rate:.3f}; "
        f"{sum(len(r.errors) for r in res)} backend errors",
        file=sys.stderr,
    )
    return 0


def cmd_generate(a) -> int:
    from .generation import sample_candidates

    rows = _read_jsonl(a.input)
    if any("problem" not in r for r in rows):
        raise SystemExit(f"every line of {a.input} needs a 'problem' field")
    gen = _generator(a)
    cands = sample_candidates(
        gen,
        [r["problem"] for r in rows],
        task=a.task,
        n=a.n,
        temperature=a.temperature,
        max_tokens=a.max_tokens,
        seed=a.seed,
    )
    out = [{**r, "candidates": [{"text": c.text, "meta": c.meta} for c in cs]} for r, cs in zip(rows, cands)]
    _write_jsonl(a.out, out)
    return 0


def cmd_bench(a) -> int:
    from paperworks_shared.bench import BenchContext, write_report

    from .bench import run

    ctx = BenchContext("v1-infer", a.scale, a.results)
    run(ctx)
    write_report(a.results, scale=a.scale)
    print(f"wrote {len(ctx.records)} records to {ctx.outdir}")
    return 0


_PAIRRL_FLAGS = {  # argparse dest -> RunConfig field (only flags given explicitly override the config)
    "backend": "backend",
    "modes": "modes",
    "seeds": "seeds",
    "sft_steps": "sft_steps",
    "steps": "steps",
    "problems_per_step": "problems_per_step",
    "lam": "lam",
    "lr": "lr",
    "eval_problems": "eval_problems",
    "budget": "budget",
    "out": "out",
    "save_every": "save_every",
    "resume": "resume",
}


def cmd_pairrl(a) -> int:
    from paperworks_shared.bench import markdown_table

    from .pairrl.runner import RunConfig, load_config, run_study, summarize

    data = load_config(a.config) if a.config else {}
    for dest, key in _PAIRRL_FLAGS.items():
        v = getattr(a, dest)
        if v is not None:
            data[key] = v
    if isinstance(data.get("modes"), str):
        data["modes"] = tuple(m.strip() for m in data["modes"].split(",") if m.strip())
    if isinstance(data.get("seeds"), str):
        data["seeds"] = tuple(int(x) for x in data["seeds"].split(",") if x.strip())
    try:
        cfg = RunConfig(**data)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"pairrl: {e}") from e
    rows, extra = run_study(cfg, progress=True)
    print(markdown_table(rows))
    if len(cfg.seeds) > 1:
        print(markdown_table(summarize(rows)))
    for seed, info in extra["sft"].items():
        print(f"seed {seed}: SFT loss {info['sft_loss_first']:.3f} -> {info['sft_loss_last']:.3f}")
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {"config": vars(cfg), "rows": rows, "summary": summarize(rows), **extra},
                indent=1,
                default=str,
            )
        )
    if a.png:
        from .pairrl.runner import plot_summary

        plot_summary(summarize(rows)).savefig(a.png, dpi=110, bbox_inches="tight")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="v1-infer",
        description="V1-Infer: pick the best of N sampled solutions with a budgeted pairwise self-verification "
        "tournament (arXiv 2603.04304).",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("simulate", help="method x budget table with a simulated judge (no model needed)")
    s.add_argument("--n", type=int, default=16, help="candidates per problem")
    s.add_argument("--budgets", default="1,2,3", help="budget multipliers, comma-separated")
    s.add_argument("--problems", type=int, default=600, help="number of mixed problems")
    s.add_argument(
        "--regime", default="beta", help="'beta' (p ~ Beta(0.8,0.8)) or a fixed success rate like 0.3"
    )
    s.add_argument(
        "--methods",
        default="",
        help="comma-separated subset of: v1,random_pairing,bradley_terry,"
        "knockout,round_robin,pointwise,majority,random_pick",
    )
    s.add_argument("--pos-bias", type=float, default=0.0, help="slot-A bias of the judge (latent units)")
    s.add_argument("--noise", type=float, default=0.6, help="per-item judge noise")
    s.add_argument("--calibration", type=float, default=1.0, help="per-call calibration offset sd")
    s.add_argument("--parse-failure-rate", type=float, default=0.0)
    s.add_argument("--wrong-answers", choices=["clustered", "dispersed"], default="clustered")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", help="also write the rows as JSON here")
    s.set_defaults(fn=cmd_simulate)

    s = sub.add_parser(
        "select", help="rank candidates from a JSONL file with an LLM judge and write ranked JSONL"
    )
    s.add_argument(
        "--input", required=True, help="JSONL: {'problem': str, 'candidates': [str | {'text': ...}], 'id'?}"
    )
    s.add_argument("--out", default="-", help="output JSONL ('-' = stdout)")
    s.add_argument("--task", choices=["math", "code"], default="math")
    s.add_argument(
        "--method",
        default="v1",
        help="v1 (default) or a baseline: random_pairing, bradley_terry, "
        "knockout, round_robin, pointwise, majority, random_pick",
    )
    s.add_argument("--budget", type=float, default=2.0, help="verifier calls = max(N, budget x N)")
    s.add_argument("--position", choices=["fixed", "random", "both"], default="fixed")
    s.add_argument("--on-parse-error", choices=["tie", "skip", "retry"], default="tie")
    s.add_argument("--min-degree", type=int, default=2)
    s.add_argument("--window", type=int, default=8)
    s.add_argument("--tau", type=float, default=0.1)
    s.add_argument("--k", type=int, default=3, help="votes per match for --method knockout")
    s.add_argument("--audit", action="store_true", help="include every judge call in the output")
    _add_backend(s)
    s.set_defaults(fn=cmd_select)

    s = sub.add_parser("generate", help="sample N candidates per problem from a backend")
    s.add_argument("--input", required=True, help="JSONL with a 'problem' field per line")
    s.add_argument("--out", default="-", help="output JSONL with 'candidates' added ('-' = stdout)")
    s.add_argument("--task", choices=["math", "code"], default="math")
    s.add_argument("--n", type=int, default=16)
    _add_backend(s)
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser(
        "pairrl",
        help="PairRL / PointRL / RL-only on the small offline world (warm start, RL per mode, evaluation)",
        description="Warm-start a tiny byte-level model on the (a+b) mod 5 world, RL-train a copy in each mode "
        "with the torch reference trainer or the TRL GRPOTrainer subclass, and report Pass@1, pairwise "
        "verifier accuracy and V1-Infer selection accuracy. Flags override the --config file.",
    )
    s.add_argument("--config", help="TOML or YAML file with RunConfig keys (see packages/v1-infer/configs/)")
    s.add_argument(
        "--backend", choices=["torch", "trl"], default=None, help="reference trainer or TRL (default torch)"
    )
    s.add_argument("--modes", default=None, help="comma-separated subset of pair,point,rl")
    s.add_argument("--seeds", default=None, help="comma-separated seeds (default 0)")
    s.add_argument("--sft-steps", type=int, default=None, help="warm-start SFT steps")
    s.add_argument("--steps", type=int, default=None, help="RL steps per mode")
    s.add_argument("--problems-per-step", type=int, default=None)
    s.add_argument("--lam", type=float, default=None, help="λ, weight of the verifier objective")
    s.add_argument("--lr", type=float, default=None, help="RL learning rate")
    s.add_argument("--eval-problems", type=int, default=None)
    s.add_argument("--budget", type=float, default=None, help="V1-Infer budget multiplier at evaluation")
    s.add_argument("--out", default=None, help="folder for checkpoints, final models and metrics.jsonl")
    s.add_argument("--save-every", type=int, default=None, help="checkpoint every N RL steps (needs --out)")
    s.add_argument(
        "--resume", action="store_true", default=None, help="continue from the latest checkpoints in --out"
    )
    s.add_argument("--json", help="write config, rows, summary and per-step logs here")
    s.add_argument("--png", help="write a bar chart of the summary (mean ± sd over seeds) here")
    s.set_defaults(fn=cmd_pairrl)

    s = sub.add_parser(
        "bench", help="run this package's benchmark (simulation study + tiny-model end to end)"
    )
    s.add_argument("--scale", choices=["smoke", "cpu", "gpu"], default="smoke")
    s.add_argument("--results", default="benchmarks/results")
    s.set_defaults(fn=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
