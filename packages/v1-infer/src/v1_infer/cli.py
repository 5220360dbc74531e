"""``v1-infer`` console script: simulate, select, generate, pairrl, bench.

Error convention (`paperworks_shared.cli`): a bad argument or input exits 2 with one line naming the
problem, before any model is loaded or request sent. ``--out`` is always a directory: ``select`` writes
``OUT/selections.jsonl``, ``generate`` ``OUT/candidates.jsonl`` (each with a judgment/generation cache
``OUT/cache.jsonl``), ``simulate`` ``OUT/simulate.json``, ``pairrl`` ``OUT/pairrl.json`` + ``.png`` next
to its checkpoints; without ``--out``, select/generate stream JSONL to stdout. Each finished problem is
appended as it completes (fsync), so a crash, a dead server or Ctrl-C keeps every finished problem;
``--resume`` continues such a file. When a problem cannot be answered (backend errors under
``--on-backend-error fail``, or the run stopped because the server is gone) the command exits 3 with a
one-line summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from paperworks_shared.cli import (
    UserError,
    add_bench_command,
    add_debug_flag,
    add_runtime_args,
    apply_runtime_args,
    check_out_dir,
    check_out_file,
    choice_of,
    existing_dir,
    existing_file,
    float_range,
    list_of,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
    require,
    run_cli,
)

from .methods import METHODS  # the one list of selection methods (baselines re-exports it; no numpy)

PROG = "v1-infer"
OUT_FILES = {"select": "selections.jsonl", "generate": "candidates.jsonl"}  # names inside --out DIR
CACHE_FILE = "cache.jsonl"
EXIT_INCOMPLETE = 3  # some problems failed or the run stopped: the output holds what finished


# ------------------------------------------------------------------------------------------------
# input / output


def _read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) per non-empty line; any bad line is a UserError naming file and line."""
    p = Path(path)
    rows = []
    for k, raw in enumerate(p.read_bytes().split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{k}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{k}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{k}: expected a JSON object, got {type(obj).__name__}")
        rows.append((k, obj))
    if not rows:
        raise UserError(f"{path}: no input lines")
    return rows


def _problem(path, k: int, r: dict) -> str:
    if "problem" not in r:
        raise UserError(f"{path}:{k}: missing 'problem' field")
    if not isinstance(r["problem"], str):
        raise UserError(f"{path}:{k}: 'problem' must be a string, got {type(r['problem']).__name__}")
    return r["problem"]


def _candidates(path, k: int, r: dict):
    from .types import Candidate

    if "candidates" not in r:
        raise UserError(f"{path}:{k}: missing 'candidates' field")
    cs = r["candidates"]
    if not isinstance(cs, list):
        raise UserError(f"{path}:{k}: 'candidates' must be a list, got {type(cs).__name__}")
    if not cs:
        raise UserError(f"{path}:{k}: 'candidates' is empty: nothing to select from")
    out = []
    for c_ix, c in enumerate(cs):
        if isinstance(c, str):
            out.append(Candidate(c))
        elif isinstance(c, dict):
            if not isinstance(c.get("text"), str):
                raise UserError(f"{path}:{k}: candidate {c_ix} has no string 'text' field")
            meta = c.get("meta", {})
            if not isinstance(meta, dict):
                raise UserError(f"{path}:{k}: candidate {c_ix} 'meta' must be an object")
            if meta.get("error"):
                raise UserError(
                    f"{path}:{k}: candidate {c_ix} is a failed generation ({str(meta['error'])[:120]}); "
                    "failed generations are never ranked: regenerate or drop it"
                )
            out.append(Candidate(c["text"], dict(meta)))
        else:
            raise UserError(
                f"{path}:{k}: candidate {c_ix} must be a string or an object with 'text', "
                f"got {type(c).__name__}"
            )
    return out


class _Output:
    """Append-and-fsync JSONL output keyed by input line; ``--resume`` reads what is already there."""

    def __init__(self, out_dir: str | None, name: str, resume: bool):
        self.done: dict[int, dict] = {}
        if out_dir is None:
            self.path: Path | None = None
            require(not resume, "--resume needs --out DIR (not stdout)")
            return
        check_out_dir(out_dir)
        self.path = Path(out_dir) / name
        path = str(self.path)
        if self.path.is_dir():
            raise UserError(f"--out {out_dir!r}: {name} inside it is a directory")
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise UserError(
                    f"--out {out_dir!r} already holds {name}: pass --resume to continue it, or use "
                    "another folder"
                )
            raw = self.path.read_bytes()
            end = raw.rfind(b"\n") + 1
            if end < len(raw):  # a torn last line from a killed run: cut it so appends stay valid JSONL
                print(f"{PROG}: dropping a torn last line of {path}", file=sys.stderr)
                with open(self.path, "r+b") as f:
                    f.truncate(end)
                raw = raw[:end]
            for k, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    self.done[int(rec["line"])] = rec
                except (ValueError, KeyError, TypeError):
                    raise UserError(f"--resume: {path}:{k} is not a record written by {PROG}") from None

    def check_matches(self, rows: list[tuple[int, dict]]) -> None:
        by_line = dict(rows)
        for line, rec in self.done.items():
            if line not in by_line or by_line[line].get("problem") != rec.get("problem"):
                raise UserError(
                    f"--resume: {self.path} line for input line {line} does not match the input file "
                    "(different input?)"
                )

    def write(self, rec: dict) -> None:
        from paperworks_shared.files import strict_json

        text = strict_json(rec, indent=None, default=str) + "\n"
        if self.path is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------------
# backend


def _add_backend(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument(
        "--backend",
        type=choice_of(("hf", "vllm", "openai")),
        default="hf",
        help="hf = local transformers folder (default); vllm = in-process vLLM; openai = any "
        "OpenAI-compatible server (vLLM, SGLang)",
    )
    g.add_argument(
        "--model", required=True, help="model folder (hf), model path/name (vllm) or served name (openai)"
    )
    g.add_argument("--base-url", help="server URL for --backend openai, e.g. http://127.0.0.1:8000")
    g.add_argument(
        "--api-key-env",
        default=None,
        help="name of the environment variable holding the API key (openai; default: none sent)",
    )
    g.add_argument(
        "--chat",
        action="store_true",
        help="chat endpoint with the server's chat template (openai) / the tokenizer's chat template (hf)",
    )
    g.add_argument(
        "--extra-body",
        type=_json_object,
        default=None,
        help='JSON object merged into every request (openai), e.g. \'{"structured_outputs": {"regex": "..."}}\'',
    )
    g.add_argument("--concurrency", type=positive_int, default=64, help="max parallel HTTP requests")
    g.add_argument("--timeout", type=positive_float, default=120.0, help="per-request timeout, seconds")
    g.add_argument("--max-retries", type=nonneg_int, default=4, help="retries per HTTP request (openai)")
    g.add_argument("--batch-size", type=positive_int, default=16, help="generation batch size (hf)")
    g.add_argument("--max-tokens", type=positive_int, default=1024, help="max new tokens per call")
    g.add_argument(
        "--max-model-len",
        type=positive_int,
        default=None,
        help="the server's context length: every prompt + --max-tokens is checked against it before "
        "any request (needs a local tokenizer: --tokenizer, or --model as a local folder)",
    )
    g.add_argument("--tokenizer", type=existing_dir, default=None, help="local tokenizer folder")
    g.add_argument(
        "--temperature",
        type=float_range(0.0, 10.0),
        default=None,
        help="sampling temperature (default: paper's 1.0 for math, 0.6 for code)",
    )
    g.add_argument(
        "--seed",
        type=nonneg_int,
        default=None,
        help="run seed: each request gets its own seed derived from it (default: no seed is sent)",
    )
    g.add_argument(
        "--on-backend-error",
        type=choice_of(("fail", "skip")),
        default="fail",
        help="fail (default): a problem with a failed call is marked failed and the command exits 3; "
        "skip: the pair / generation is dropped and counted",
    )
    g.add_argument(
        "--abort-after",
        type=nonneg_int,
        default=8,
        help="stop the run after this many failed calls in a row (server gone); 0 = never",
    )
    g.add_argument("--resume", action="store_true", help="continue an interrupted --out file")
    g.add_argument(
        "--cache",
        default=None,
        help="judgment cache JSONL (default: OUT.cache.jsonl when --out is a file); a re-run sends no "
        "request that was already answered",
    )
    g.add_argument("--no-cache", action="store_true", help="do not keep a judgment cache")
    add_runtime_args(p)  # --device (hf backend), --threads, --no-progress


def _check_backend_args(a) -> None:
    if a.backend == "openai":
        require(bool(a.base_url), "--backend openai needs --base-url (e.g. http://127.0.0.1:8000)")
        require(
            a.base_url.startswith(("http://", "https://")),
            f"--base-url must start with http:// or https://, got {a.base_url!r}",
        )
    else:
        require(
            a.base_url is None, f"--base-url is only used with --backend openai (got --backend {a.backend})"
        )
        require(a.extra_body is None, "--extra-body is only used with --backend openai")
    if a.backend == "hf":
        require(
            Path(a.model).is_dir(), f"--model {a.model!r}: not a local model folder (needed by --backend hf)"
        )
    if a.api_key_env is not None:
        require(
            bool(os.environ.get(a.api_key_env)),
            f"--api-key-env {a.api_key_env}: that environment variable is not set or empty",
        )


def _tokenizer(a):
    if a.max_model_len is None:
        return None
    folder = a.tokenizer or (Path(a.model) if Path(a.model).is_dir() else None)
    require(
        folder is not None,
        "--max-model-len needs a local tokenizer to count prompt tokens: pass --tokenizer DIR",
    )
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"--tokenizer {str(folder)!r}: cannot load a tokenizer ({e})") from None


def _count_tokens(tok, prompt: str, chat: bool) -> int:
    if chat and getattr(tok, "chat_template", None):
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        return len(ids["input_ids"] if isinstance(ids, dict) else ids)
    return len(tok(prompt)["input_ids"])


def _check_length(a, tok, where: str, prompt: str) -> None:
    n = _count_tokens(tok, prompt, a.chat)
    if n + a.max_tokens > a.max_model_len:
        raise UserError(
            f"{where}: prompt of {n} tokens + --max-tokens {a.max_tokens} does not fit --max-model-len "
            f"{a.max_model_len}"
        )


def _device(a):
    """The torch.device for --device / --threads (only the hf backend runs a model in this process)."""
    if a.backend != "hf":
        require(
            a.device == "auto",
            f"--device {a.device}: only the hf backend places a model (vllm / openai choose their own)",
        )
        if a.threads:
            import torch

            torch.set_num_threads(a.threads)
        return None
    return apply_runtime_args(a)


def _generator(a, cache_path):
    from .backends.factory import make_generator
    from .backends.requests import RequestPlanner

    api_key = os.environ[a.api_key_env] if a.api_key_env else "EMPTY"
    try:
        gen = make_generator(
            a.backend,
            a.model,
            base_url=a.base_url,
            batch_size=a.batch_size,
            concurrency=a.concurrency,
            timeout=a.timeout,
            chat=a.chat,
            api_key=api_key,
            max_retries=a.max_retries,
            abort_after=a.abort_after,
            extra_body=a.extra_body,
            device=_device(a),
            progress=not a.no_progress,
        )
    except (ImportError, ValueError, OSError) as e:
        raise UserError(f"cannot start the {a.backend} backend: {e}") from None
    return RequestPlanner(gen, a.model, run_seed=a.seed, cache_path=cache_path)


def _cache_path(a):
    if a.no_cache:
        return None
    if a.cache:
        check_out_file(a.cache, what="--cache")
        return a.cache
    return None if a.out is None else str(Path(a.out) / CACHE_FILE)


def _summary(
    kind: str, n_total: int, n_done_before: int, written: int, failed: list[str], aborted: str | None
):
    head = f"{kind}: {n_done_before + written}/{n_total} problems in the output ({written} new"
    head += f", {n_done_before} from --resume)" if n_done_before else ")"
    if failed or aborted:
        why = aborted or failed[0]
        extra = f"; {len(failed)} problem(s) failed" if failed else ""
        print(f"{PROG}: error: {head}{extra}; {why[:300]}", file=sys.stderr)
        return EXIT_INCOMPLETE
    print(head, file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------------
# commands


def cmd_simulate(a) -> int:
    from paperworks_shared.bench import markdown_table

    from .simulation import default_methods, run_study

    if a.out:
        check_out_dir(a.out)
    specs = default_methods(tuple(a.budgets))
    if a.methods:
        want = set(a.methods)
        specs = [s for s in specs if s.method in want]
    regime = a.regime
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
    if a.out:
        from paperworks_shared.files import atomic_write_json

        atomic_write_json(Path(a.out) / "simulate.json", rows)
        print(f"wrote {Path(a.out) / 'simulate.json'}", file=sys.stderr)
    return 0


def cmd_select(a) -> int:
    from .baselines import make_selector
    from .config import TournamentConfig
    from .driver import run_selectors
    from .errors import BackendUnavailable
    from .judges.llm import LLMPairwiseJudge, LLMPointwiseJudge
    from .prompts import render_pairwise, render_pointwise

    _check_backend_args(a)
    rows = _read_jsonl(a.input)
    parsed = [(k, _problem(a.input, k, r), _candidates(a.input, k, r), r) for k, r in rows]
    out = _Output(a.out, OUT_FILES["select"], a.resume)
    out.check_matches(rows)
    tok = _tokenizer(a)
    if tok is not None:
        for k, prob, cs, _ in parsed:
            longest = sorted(cs, key=lambda c: len(c.text), reverse=True)
            if a.method == "pointwise":
                prompt = render_pointwise(prob, longest[0].text, a.task)
            elif len(cs) >= 2:
                prompt = render_pairwise(prob, longest[0].text, longest[1].text, a.task)
            else:
                continue
            _check_length(a, tok, f"{a.input}:{k}", prompt)
    todo = [t for t in parsed if t[0] not in out.done]
    cfg = TournamentConfig(
        budget_multiplier=a.budget,
        position=a.position,
        on_parse_error=a.on_parse_error,
        on_backend_error=a.on_backend_error,
        abort_after=a.abort_after,
        min_degree=a.min_degree,
        window=a.window,
        tau=a.tau,
        seed=a.seed or 0,
    )
    gen = _generator(a, _cache_path(a))
    kw = dict(temperature=a.temperature, max_tokens=a.max_tokens, seed=None)  # seeds: RequestPlanner
    judge = LLMPairwiseJudge(gen, a.task, **kw)
    pjudge = LLMPointwiseJudge(gen, a.task, **kw)
    extra: dict = {"k": a.k} if a.method == "knockout" else {}
    if a.method == "majority":
        from .graders.math import canonical_answer, extract_answer

        for _, _, cs, _ in todo:
            for c in cs:
                c.meta.setdefault("answer", extract_answer(c.text))
        extra = {"answer_key": canonical_answer}
    # problem at input line k always uses seed cfg.seed + k, so --resume replays the same schedule
    selectors = [make_selector(a.method, cs, cfg, seed=cfg.seed + k, **extra) for k, _, cs, _ in todo]
    failed: list[str] = []
    written = 0

    def on_done(p: int, res) -> None:
        nonlocal written
        k, prob, cs, row = todo[p]
        if res.failed:
            failed.append(f"{a.input}:{k}: {res.failed}")
            return
        d = res.to_dict()
        if not a.audit:
            d.pop("comparisons")
        d.update(line=k, id=row.get("id"), problem=prob, best=cs[res.order[0]].text if cs else None)
        out.write(d)
        written += 1

    aborted = None
    try:
        run_selectors(
            selectors,
            [t[1] for t in todo],
            [t[2] for t in todo],
            judge,
            pjudge,
            progress=not a.no_progress,
            on_done=on_done,
            abort_after=a.abort_after,
        )
    except BackendUnavailable as e:
        aborted = str(e)
    print(
        f"{PROG} select: judge calls sent {gen.sent}, from cache {gen.hits}; backend errors "
        f"{judge.backend_errors + pjudge.backend_errors}; parse failures {judge.parse_failures + pjudge.parse_failures}",
        file=sys.stderr,
    )
    return _summary("select", len(parsed), len(parsed) - len(todo), written, failed, aborted)


def cmd_generate(a) -> int:
    from .generation import sample_candidates
    from .prompts import render_generation

    _check_backend_args(a)
    rows = _read_jsonl(a.input)
    parsed = [(k, _problem(a.input, k, r), r) for k, r in rows]
    out = _Output(a.out, OUT_FILES["generate"], a.resume)
    out.check_matches(rows)
    tok = _tokenizer(a)
    if tok is not None:
        for k, prob, _ in parsed:
            _check_length(a, tok, f"{a.input}:{k}", render_generation(prob, a.task))
    todo = [t for t in parsed if t[0] not in out.done]
    gen = _generator(a, _cache_path(a))
    chunk = max(1, a.concurrency if a.backend == "openai" else a.batch_size)
    failed: list[str] = []
    written = dropped = 0
    run = 0  # problems in a row whose every sample failed
    aborted = None
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        cands = sample_candidates(
            gen,
            [t[1] for t in part],
            task=a.task,
            n=a.n,
            temperature=a.temperature,
            max_tokens=a.max_tokens,
            seed=None,
        )
        for (k, _, row), cs in zip(part, cands):
            bad = [c for c in cs if c.meta.get("error")]
            run = run + 1 if len(bad) == len(cs) else 0
            if bad and (a.on_backend_error == "fail" or len(bad) == len(cs)):
                failed.append(
                    f"{a.input}:{k}: {len(bad)}/{len(cs)} generations failed: {bad[0].meta['error']}"
                )
                continue
            good = [c for c in cs if not c.meta.get("error")]
            dropped += len(bad)
            rec = {**row, "line": k, "candidates": [{"text": c.text, "meta": c.meta} for c in good]}
            if bad:
                rec["dropped_failed_generations"] = len(bad)
            out.write(rec)
            written += 1
        if a.abort_after and run >= a.abort_after:
            aborted = f"stopped after {run} problems in a row whose every generation failed (server down?)"
            break
    if dropped:
        print(
            f"{PROG} generate: dropped {dropped} failed generations (--on-backend-error skip)",
            file=sys.stderr,
        )
    return _summary("generate", len(parsed), len(parsed) - len(todo), written, failed, aborted)


_PAIRRL_FLAGS = {  # argparse dest -> RunConfig field (only flags given explicitly override the config)
    "backend": "backend",
    "modes": "modes",
    "sft_steps": "sft_steps",
    "steps": "steps",
    "problems_per_step": "problems_per_step",
    "lam": "lam",
    "lr": "lr",
    "eval_problems": "eval_problems",
    "budget": "budget",
    "save_every": "save_every",
    "resume": "resume",
}


def cmd_pairrl(a) -> int:
    from paperworks_shared.bench import markdown_table

    from .pairrl.runner import RunConfig, load_config, run_study, study_record, summarize

    try:
        data = load_config(a.config) if a.config else {}
    except (ValueError, OSError) as e:
        raise UserError(f"--config {a.config}: {e}") from None
    for dest, key in _PAIRRL_FLAGS.items():
        v = getattr(a, dest)
        if v is not None:
            data[key] = v
    require(a.seeds is None or a.seed is None, "--seeds N (seeds 0..N-1) and --seed S exclude each other")
    if a.seeds is not None:
        data["seeds"] = list(range(a.seeds))
    elif a.seed is not None:
        data["seeds"] = [a.seed]
    if a.out is not None:
        data["out"] = a.out
    try:
        cfg = RunConfig(**data)
    except (TypeError, ValueError) as e:
        raise UserError(f"pairrl: {e}") from None
    if cfg.out:
        check_out_dir(cfg.out, what="--out")
    device = apply_runtime_args(a)
    require(
        cfg.backend == "torch" or a.device == "auto",
        "--device: the trl backend places the model itself (accelerate); leave --device auto",
    )
    rows, extra = run_study(cfg, progress=not a.no_progress, device=device)
    print(markdown_table(rows))
    if len(cfg.seeds) > 1:
        print(markdown_table(summarize(rows)))
    for seed, info in extra["sft"].items():
        first, last = info.get("sft_loss_first"), info.get("sft_loss_last")
        if first is not None and last is not None:
            print(f"seed {seed}: SFT loss {first:.3f} -> {last:.3f}")
    if cfg.out:
        from paperworks_shared.files import atomic_path, atomic_write_text

        rec = study_record(cfg, rows, extra, experiment="pairrl")
        atomic_write_text(Path(cfg.out) / "pairrl.json", rec.to_json() + "\n")
        try:
            from .pairrl.runner import plot_summary

            fig = plot_summary(summarize(rows))
        except ImportError as e:  # matplotlib is in the [bench] extra
            print(f"{PROG}: no pairrl.png ({e})", file=sys.stderr)
        else:
            with atomic_path(Path(cfg.out) / "pairrl.png") as tmp:
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        print(f"wrote {Path(cfg.out) / 'pairrl.json'}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------------
# parser


def _budget_list(text: str) -> list:
    """Comma-separated positive budget multipliers; integers stay int (pointwise repeats need them)."""
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()] or [""]:
        v = positive_float(part)
        out.append(int(v) if "." not in part and float(v).is_integer() else v)
    return out


def _json_object(text: str) -> dict:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _regime(text: str):
    return "beta" if text == "beta" else probability(text)


def _mode_list(text: str) -> list[str]:
    return list_of(choice_of(("pair", "point", "rl")))(text)


_regime.__name__ = "'beta' or a success rate in [0, 1]"
_budget_list.__name__ = "comma-separated positive budgets"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="V1-Infer: pick the best of N sampled solutions with a budgeted pairwise self-verification "
        "tournament (arXiv 2603.04304).",
    )
    add_debug_flag(p)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("simulate", help="method x budget table with a simulated judge (no model needed)")
    s.add_argument("--n", type=int_at_least(2), default=16, help="candidates per problem")
    s.add_argument(
        "--budgets", type=_budget_list, default=[1, 2, 3], help="budget multipliers, comma-separated"
    )
    s.add_argument("--problems", type=positive_int, default=600, help="number of mixed problems")
    s.add_argument(
        "--regime",
        type=_regime,
        default="beta",
        help="'beta' (p ~ Beta(0.8,0.8)) or a fixed success rate like 0.3",
    )
    s.add_argument(
        "--methods",
        type=list_of(choice_of(METHODS)),
        default=None,
        help="comma-separated subset of: " + ",".join(METHODS),
    )
    s.add_argument("--pos-bias", type=float_range(-10.0, 10.0), default=0.0, help="slot-A bias of the judge")
    s.add_argument("--noise", type=nonneg_float, default=0.6, help="per-item judge noise")
    s.add_argument("--calibration", type=nonneg_float, default=1.0, help="per-call calibration offset sd")
    s.add_argument("--parse-failure-rate", type=probability, default=0.0)
    s.add_argument("--wrong-answers", type=choice_of(("clustered", "dispersed")), default="clustered")
    s.add_argument("--seed", type=nonneg_int, default=0)
    s.add_argument("--out", default=None, help="folder: also write the rows as OUT/simulate.json")
    s.set_defaults(fn=cmd_simulate)

    s = sub.add_parser(
        "select", help="rank candidates from a JSONL file with an LLM judge and write ranked JSONL"
    )
    s.add_argument(
        "--input",
        type=existing_file,
        required=True,
        help="JSONL: {'problem': str, 'candidates': [str | {'text': ...}], 'id'?}",
    )
    s.add_argument(
        "--out",
        default=None,
        help="output folder: OUT/selections.jsonl, one line per finished problem, and the judgment cache "
        "OUT/cache.jsonl (default: JSONL to stdout, no cache)",
    )
    s.add_argument("--task", type=choice_of(("math", "code")), default="math")
    s.add_argument("--method", type=choice_of(METHODS), default="v1", help="v1 (default) or a baseline")
    s.add_argument("--budget", type=positive_float, default=2.0, help="verifier calls = max(N, budget x N)")
    s.add_argument("--position", type=choice_of(("fixed", "random", "both")), default="fixed")
    s.add_argument("--on-parse-error", type=choice_of(("tie", "skip", "retry")), default="tie")
    s.add_argument("--min-degree", type=nonneg_int, default=2)
    s.add_argument("--window", type=positive_int, default=8)
    s.add_argument("--tau", type=probability, default=0.1)
    s.add_argument("--k", type=positive_int, default=3, help="votes per match for --method knockout")
    s.add_argument("--audit", action="store_true", help="include every judge call in the output")
    _add_backend(s)
    s.set_defaults(fn=cmd_select)

    s = sub.add_parser("generate", help="sample N candidates per problem from a backend")
    s.add_argument("--input", type=existing_file, required=True, help="JSONL with a 'problem' field per line")
    s.add_argument(
        "--out",
        default=None,
        help="output folder: OUT/candidates.jsonl (input rows with 'candidates' added) and the cache "
        "OUT/cache.jsonl (default: JSONL to stdout, no cache)",
    )
    s.add_argument("--task", type=choice_of(("math", "code")), default="math")
    s.add_argument("--n", type=positive_int, default=16)
    _add_backend(s)
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser(
        "pairrl",
        help="PairRL / PointRL / RL-only on the small offline world (warm start, RL per mode, evaluation)",
        description="Warm-start a tiny byte-level model on the (a+b) mod 5 world, RL-train a copy in each mode "
        "with the torch reference trainer or the TRL GRPOTrainer subclass, and report Pass@1, pairwise "
        "verifier accuracy and V1-Infer selection accuracy. Flags override the --config file.",
    )
    s.add_argument(
        "--config",
        type=existing_file,
        help="TOML or YAML file with RunConfig keys (see packages/v1-infer/configs/)",
    )
    s.add_argument(
        "--backend", type=choice_of(("torch", "trl")), default=None, help="reference trainer or TRL"
    )
    s.add_argument("--modes", type=_mode_list, default=None, help="comma-separated subset of pair,point,rl")
    s.add_argument(
        "--seeds", type=positive_int, default=None, help="number of seeds: runs seeds 0..N-1 (default: 1)"
    )
    s.add_argument("--seed", type=nonneg_int, default=None, help="run this one seed")
    s.add_argument("--sft-steps", type=positive_int, default=None, help="warm-start SFT steps")
    s.add_argument("--steps", type=positive_int, default=None, help="RL steps per mode")
    s.add_argument("--problems-per-step", type=positive_int, default=None)
    s.add_argument("--lam", type=nonneg_float, default=None, help="λ, weight of the verifier objective")
    s.add_argument("--lr", type=positive_float, default=None, help="RL learning rate")
    s.add_argument("--eval-problems", type=positive_int, default=None)
    s.add_argument(
        "--budget", type=positive_float, default=None, help="V1-Infer budget multiplier at evaluation"
    )
    s.add_argument(
        "--out",
        default=None,
        help="folder for checkpoints, final models, metrics.jsonl, pairrl.json (strict JSON record: "
        "config, rows, summary, per-step logs) and pairrl.png",
    )
    s.add_argument(
        "--save-every", type=positive_int, default=None, help="checkpoint every N RL steps (needs --out)"
    )
    s.add_argument(
        "--resume", action="store_true", default=None, help="continue from the latest checkpoints in --out"
    )
    add_runtime_args(s)
    s.set_defaults(fn=cmd_pairrl)

    add_bench_command(sub, PROG)
    return p


def int_at_least(lo: int):
    from paperworks_shared.cli import int_range

    return int_range(lo)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    fn = getattr(args, "fn", None) or args.func  # `bench` comes from paperworks_shared.cli
    return int(fn(args))


def main(argv=None) -> int:
    return run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
