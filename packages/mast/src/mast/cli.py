"""The ``mast`` console script: taxonomy, validate, normalize, annotate, agree, report, detect, stub-server, bench.

Error convention (`paperworks_shared.cli`): a bad argument, a missing/unreadable/malformed input file or an
unwritable output is one line ``mast: error: ...`` on stderr and exit 2, before any judge call; Ctrl-C exits
130 and keeps every finished annotation; ``mast annotate`` exits 1 (one summary line) when any trace failed
(dead server, retries exhausted, overflow) -- the output then holds every trace finished before the failure
and ``--resume`` finishes the rest. Tracebacks only with ``--debug`` or for real bugs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from paperworks_shared.cli import (
    UserError,
    add_bench_command,
    add_debug_flag,
    add_runtime_args,
    choice_of,
    existing_dir,
    int_range,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
    require,
    run_cli,
)

from . import taxonomy as tx

FORMAT_NAMES = (
    "auto",
    "ag2",
    "hyperagent",
    "chatdev",
    "metagpt",
    "openmanus",
    "appworld",
    "magentic",
    "messages",
    "otel",
    "openinference",
    "mad",
    "mad_human",
    "jsonl",
)


# the stub judge's answer styles (mast.judges.stub.STYLES; a test keeps the two equal). Spelled out here so
# that building the parser (`mast --help`) does not import the stub server.
STYLES = ("terse", "echo", "markdown", "json", "missing_mode", "example_echo", "garbage")


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()] if s else []


def _load(path, fmt: str = "auto"):
    """`load_traces`, with a malformed, non-UTF-8 or unrecognised input as a UserError naming the file."""
    from .traces import load_traces

    try:
        return load_traces(path, fmt)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        # ValueError covers UnicodeDecodeError and json.JSONDecodeError; Key/Type/AttributeError are records
        # of the wrong shape (a list where a dict was expected, ...)
        raise UserError(f"cannot load traces from {path} (format {fmt}): {type(e).__name__}: {e}") from e


def _fail_first(text: str) -> dict[int, int]:
    out = {}
    for item in _csv(text):
        try:
            code, n = (int(x) for x in item.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: expected STATUS:COUNT, e.g. 429:1") from None
        if not (400 <= code <= 599) or n < 0:
            raise argparse.ArgumentTypeError(f"{item!r}: status must be 400-599 and count >= 0")
        out[code] = n
    return out


def cmd_taxonomy(a) -> int:
    t = tx.get(a.version)
    print(json.dumps(t.to_dict(), indent=1) if a.format == "json" else t.to_markdown())
    return 0


def cmd_validate(a) -> int:
    from .budget import char_estimate
    from .detectors import detect
    from .traces import detect_format, sanitize_trace

    try:
        fmt = detect_format(a.path) if a.format == "auto" else a.format
    except (ValueError, KeyError) as e:
        raise UserError(f"cannot detect the format of {a.path}: {e}") from e
    traces = _load(a.path, fmt)
    empty = [t.trace_id for t in traces if not t.text().strip()]
    toks = sorted(char_estimate(t.text()) for t in traces)
    leaks: dict[str, int] = {}
    secrets = 0
    for t in traces:
        _, rep = sanitize_trace(t)
        for k in rep.leak_fields_removed + t.metadata.get("removed_fields", []):
            leaks[k] = leaks.get(k, 0) + 1
        leaks["<text pairs>"] = leaks.get("<text pairs>", 0) + rep.leak_pairs_redacted
        secrets += rep.secrets_redacted
    det: dict[str, int] = {}
    for t in traces:
        for f in detect(t):
            det[f.detector] = det.get(f.detector, 0) + f.present
    out = {
        "path": str(a.path),
        "format": fmt,
        "traces": len(traces),
        "empty": empty,
        "tokens_est": {
            "min": toks[0] if toks else 0,
            "median": toks[len(toks) // 2] if toks else 0,
            "max": toks[-1] if toks else 0,
        },
        "leak_fields_found": {k: v for k, v in leaks.items() if v},
        "secrets_found": secrets,
        "with_reference_labels": sum(t.labels is not None for t in traces),
        "detector_hits": det,
    }
    print(json.dumps(out, indent=1))
    return 1 if empty else 0


# `--out` is always a folder; the commands name the files inside it (issue 20.4)
NORMALIZE_FILE = "traces.jsonl"
ANNOTATE_FILE = "annotations.jsonl"
REPORT_FILES = ("report.md", "report.csv")  # + report.<--plot-format>


def _out_file(out_dir: str, name: str) -> Path:
    """``out_dir/name`` after proving the folder writable and the name free of a directory."""
    from paperworks_shared.cli import check_out_dir

    target = check_out_dir(out_dir) / name
    if target.is_dir():
        raise UserError(f"--out {out_dir!r}: {name} inside it is a directory")
    return target


def cmd_normalize(a) -> int:
    from .traces import sanitize_trace, save_traces

    target = _out_file(a.out, NORMALIZE_FILE)
    traces = _load(a.path, a.format)
    if not a.no_sanitize:
        out = []
        for t in traces:
            clean, rep = sanitize_trace(t, keep_fields=set(a.keep_fields))
            clean.labels = t.labels  # reference labels stay in the file; they are never rendered into prompts
            clean.metadata["sanitize"] = rep.to_dict()
            out.append(clean)
        traces = out
    save_traces(traces, target)
    print(f"wrote {len(traces)} traces to {target}", file=sys.stderr)
    return 0


def _check_judge_args(a) -> None:
    """Everything about --judge that can be checked before loading traces or models."""
    if a.judge == "stub":
        return
    if a.judge.startswith("hf:"):
        d = Path(a.judge[3:]).expanduser()
        require(bool(a.judge[3:]) and d.is_dir(), f"--judge {a.judge!r}: {str(d)!r} is not a model folder")
        return
    require(
        a.judge.startswith(("http://", "https://")) and len(a.judge.split("://", 1)[1]) > 0,
        f"--judge {a.judge!r}: expected an http(s):// base URL, 'hf:LOCAL_MODEL_DIR' or 'stub'",
    )
    require(bool(a.model), "--model is required with an HTTP judge URL")
    if a.api_key_env:
        require(
            bool(os.environ.get(a.api_key_env)),
            f"--api-key-env {a.api_key_env}: that environment variable is not set or empty",
        )


def _make_judge(a):
    from .judges import HFLocalJudge, OpenAICompatibleJudge, StubBehaviour, StubJudge

    if a.judge == "stub":
        return StubJudge(StubBehaviour(style=a.stub_style))
    if a.judge.startswith("hf:"):
        try:
            from paperworks_shared.cli import apply_runtime_args

            device = apply_runtime_args(a)  # --threads, and --device resolved (clear error without CUDA)
            return HFLocalJudge.from_dir(a.judge[3:], device=str(device))
        except (OSError, ValueError) as e:
            raise UserError(f"--judge {a.judge!r}: cannot load the local model: {e}") from e
    key = os.environ.get(a.api_key_env) if a.api_key_env else None
    return OpenAICompatibleJudge(
        a.judge,
        a.model,
        api_key=key,
        timeout_s=a.timeout,
        max_retries=a.retries,
        structured_output=not a.no_structured,
        max_response_bytes=a.max_response_bytes,
    )


_COMPAT_KEYS = ("model", "layout", "pack_sha256", "taxonomy")


def _existing_annotations(path: Path) -> list:
    """The annotation records already in `path` (a torn last line from a crash is dropped)."""
    from paperworks_shared.files import read_jsonl

    from .annotate import Annotation

    if not path.exists() or path.stat().st_size == 0:
        return []
    try:
        return [Annotation.from_dict(r) for r in read_jsonl(path)]
    except (ValueError, TypeError) as e:
        raise UserError(f"--resume: {path} is not an annotations file this version can read: {e}") from e


def _cost(usage: dict, a) -> float:
    cached_price = (
        a.price_input_per_1m if a.price_cached_input_per_1m is None else a.price_cached_input_per_1m
    )
    uncached = max(usage["prompt_tokens"] - usage["cached_tokens"], 0)
    return (
        uncached * a.price_input_per_1m
        + usage["cached_tokens"] * cached_price
        + usage["completion_tokens"] * a.price_output_per_1m
    ) / 1e6


def cmd_annotate(a) -> int:
    from paperworks_shared.files import append_jsonl, atomic_write_text

    from .annotate import Annotator
    from .prompts import PromptPack, render

    # everything the user gave is checked before the first judge call
    require(not (a.resume and a.overwrite), "--resume and --overwrite exclude each other")
    _check_judge_args(a)
    out = _out_file(a.out, ANNOTATE_FILE)
    if a.cache:
        from paperworks_shared.cli import check_out_dir

        check_out_dir(a.cache, what="--cache")
    traces = _load(a.traces, a.format)
    require(len(traces) > 0, f"{a.traces}: no traces found")
    ids = [t.trace_id for t in traces]
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    require(not dup, f"{a.traces}: duplicate trace_id(s) {dup[:5]}")
    try:
        pack = PromptPack.from_dir(a.prompt_pack) if a.prompt_pack else None
    except (OSError, ValueError) as e:
        raise UserError(f"--prompt-pack {a.prompt_pack}: {e}") from e

    previous = _existing_annotations(out) if not a.overwrite else []
    if previous and not a.resume:
        raise UserError(
            f"--out {a.out}: {out} already holds {len(previous)} annotation(s); pass --resume to finish the "
            "missing/failed traces or --overwrite to start again"
        )
    wanted = set(ids)
    done = {x.trace_id: x for x in previous if x.ok and x.trace_id in wanted}
    todo = [t for t in traces if t.trace_id not in done]
    try:
        ann = Annotator(
            _make_judge(a),
            layout=a.layout,
            prompt_pack=pack,
            few_shot=a.few_shot,
            concurrency=a.concurrency,
            n_samples=a.samples,
            temperature=a.temperature,
            seed=a.seed,
            max_tokens=a.max_tokens,
            max_input_tokens=a.max_input_tokens,
            on_overflow=a.on_overflow,
            cache_dir=a.cache or None,
            keep_fields=a.keep_fields,
            progress=not a.no_progress,
        )
    except ValueError as e:
        raise UserError(str(e)) from e
    if done:  # resuming under another judge/prompt would mix incomparable labels in one file
        probe = ann._judge_info(render("", ann.layout, ann.pack, ann.taxonomy))
        for x in done.values():
            diff = [k for k in _COMPAT_KEYS if x.judge.get(k) != probe.get(k)]
            if diff:
                raise UserError(
                    f"--resume: {out} was annotated with a different {'/'.join(diff)} "
                    f"({', '.join(f'{k}={x.judge.get(k)!r}' for k in diff)}); use another --out folder"
                )
    # start the file from the records kept (also drops a torn last line), then append as traces finish
    atomic_write_text(out, "".join(json.dumps(x.to_dict(), ensure_ascii=False) + "\n" for x in previous))
    res = ann.annotate(
        todo,
        on_result=lambda r: append_jsonl(out, r.to_dict()),
        max_consecutive_failures=a.max_consecutive_failures,
    )
    # final file: one record per trace (the newest), in input order; records of other traces kept after
    latest = {}
    for x in _existing_annotations(out):
        latest[x.trace_id] = x
    ordered = [latest.pop(i) for i in ids if i in latest] + list(latest.values())
    atomic_write_text(out, "".join(json.dumps(x.to_dict(), ensure_ascii=False) + "\n" for x in ordered))

    finished = [r for r in res if not (r.error or "").startswith("not attempted")]
    errs = [r for r in finished if not r.ok]
    n_none = sum(v is None for r in finished if r.ok for v in r.labels.values())
    usage = dict(ann.usage_sent)
    cost = _cost(usage, a)
    summary = {
        "annotated": len(finished) - len(errs),
        "resumed": len(done),
        "errors": len(errs),
        "not_attempted": len(res) - len(finished),
        "unparsed_cells": n_none,
        "judge_calls": ann.n_judge_calls,
        "cache_hits": sum(r.cache_hit for r in finished),
        "tokens_sent": usage,
        "cost_usd": round(cost, 6),
        "prices_per_1m": {
            "input": a.price_input_per_1m,
            "cached_input": a.price_input_per_1m
            if a.price_cached_input_per_1m is None
            else a.price_cached_input_per_1m,
            "output": a.price_output_per_1m,
        },
        "output": str(out),
    }
    print(json.dumps(summary), file=sys.stderr)
    print(
        f"mast annotate: {usage['prompt_tokens']:,} prompt tokens ({usage['cached_tokens']:,} cached) + "
        f"{usage['completion_tokens']:,} completion tokens sent in {ann.n_judge_calls} judge calls: "
        f"${cost:.4f} at ${a.price_input_per_1m:g} in / ${a.price_output_per_1m:g} out per 1M tokens",
        file=sys.stderr,
    )
    if errs or ann.aborted:
        first = " ".join(str(errs[0].error if errs else ann.aborted).split())[:300]
        print(
            f"mast annotate: error: {len(errs)} of {len(finished)} traces failed"
            + (f", {len(res) - len(finished)} not attempted ({ann.aborted})" if ann.aborted else "")
            + f"; first: {first}; the {len(ordered)} records written are in {out}; "
            "rerun with --resume to retry the rest",
            file=sys.stderr,
        )
        return 1
    return 0


def _labels_by_id(path) -> dict[str, dict]:
    from .annotate import load_annotations

    if not Path(path).exists():
        raise UserError(f"{path}: no such file")
    try:
        return {x.trace_id: x.labels for x in load_annotations(path)}
    except (ValueError, TypeError):
        pass
    out = {}
    for t in _load(path):
        if t.labels:
            for k, v in t.labels.items():
                if v not in (0, 1, True, False, None):
                    raise UserError(f"{path}: trace {t.trace_id} mode {k}: label {v!r} is not 0/1")
            out[t.trace_id] = {k: None if v is None else bool(v) for k, v in t.labels.items()}
    return out


def cmd_agree(a) -> int:
    from . import agreement as ag
    from . import report as rp

    ref, pred = _labels_by_id(a.reference), _labels_by_id(a.predicted)
    ids = sorted(set(ref) & set(pred))
    if not ids:
        raise UserError(f"no trace_id in common between {a.reference} and {a.predicted}")
    modes = tx.get(a.taxonomy).ids
    r, p = ag.label_matrix([ref[i] for i in ids], modes), ag.label_matrix([pred[i] for i in ids], modes)
    pooled = ag.pooled_metrics(r, p)
    lo, hi = (
        ag.bootstrap_ci(r, p, lambda x, y: ag.pooled_metrics(x, y)["kappa"], a.bootstrap)
        if a.bootstrap
        else (None, None)
    )
    print(f"# Agreement on {len(ids)} common traces x {len(modes)} modes (pooled over (trace, mode) cells)\n")
    print(rp.to_markdown([pooled | {"kappa_ci_lo": lo, "kappa_ci_hi": hi}], digits=3))
    if a.per_mode:
        print(rp.to_markdown(ag.per_mode_table(r, p, modes, n_boot=a.bootstrap), digits=3))
    return 0


_PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def cmd_report(a) -> int:
    from paperworks_shared.files import atomic_path, atomic_write_text

    from . import report as rp
    from .annotate import load_annotations

    outs: dict[str, Path] = {}
    if a.out:
        names = [*REPORT_FILES] + ([] if a.no_plot else [f"report.{a.plot_format}"])
        outs = {n.split(".")[1] if n in REPORT_FILES else "plot": _out_file(a.out, n) for n in names}
        if "plot" in outs:
            import importlib.util

            require(
                importlib.util.find_spec("matplotlib") is not None,
                "the report plot needs matplotlib (pip install 'paperworks-mast[bench]'), or pass --no-plot",
            )
    try:
        anns = load_annotations(a.annotations)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from e
    by = _csv(a.by)
    rows = rp.distribution(anns, by=by, normalize=a.normalize)
    wide = rp.pivot(rows, a.normalize, by)
    unit = {"share": "% of all failure flags", "prevalence": "% of traces flagged", "count": "flag counts"}
    md = (
        f"# MAST failure distribution\n\nNormalisation: **{a.normalize}** ({unit[a.normalize]}); "
        f"{sum(not x.ok for x in anns)} errored annotations excluded.\n\n"
        + rp.to_markdown(wide)
        + "\n## Category totals\n\n"
        + rp.to_markdown(rp.category_totals(rows, a.normalize, by))
        + "\n## Top co-occurring pairs\n\n"
        + rp.to_markdown(rp.cooccurrence(anns)[:10], digits=2)
    )
    if a.traces:  # deterministic detectors reported beside the judge (never merged into its labels)
        from .detectors import cross_check

        rows_cc = cross_check(_load(a.traces), anns)
        for r in rows_cc:
            r["disagree_ids"] = ",".join(r["disagree_ids"][:5])
        md += "\n## Deterministic detectors vs judge\n\n" + rp.to_markdown(rows_cc)
    if not outs:
        print(md)
        return 0
    atomic_write_text(outs["md"], md)
    atomic_write_text(outs["csv"], rp.to_csv(rows))
    if "plot" in outs:
        import matplotlib.pyplot as plt

        with atomic_path(outs["plot"]) as tmp:
            fig = rp.plot(rows, a.normalize, by)
            fig.savefig(tmp, dpi=110, format=a.plot_format)
            plt.close(fig)
    print(f"wrote {', '.join(str(p) for p in outs.values())}", file=sys.stderr)
    return 0


def cmd_detect(a) -> int:
    from .detectors import detect

    for t in _load(a.traces, a.format):
        hits = [f.__dict__ for f in detect(t) if f.present]
        print(json.dumps({"trace_id": t.trace_id, "findings": hits}))
    return 0


def cmd_stub_server(a) -> int:
    from .judges import StubBehaviour, StubServer

    fail = a.fail_first
    beh = StubBehaviour(
        style=a.style,
        prevalence=a.prevalence,
        noise=a.noise,
        seed=a.seed,
        latency_s=a.latency,
        prefill_s_per_token=a.prefill_s_per_token,
        fail_first=fail,
    )
    srv = StubServer(beh, host=a.host, port=a.port, max_requests=a.max_requests).start()
    print(f"stub listening on {srv.base_url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    srv.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mast",
        description="MAST failure taxonomy and LLM-as-a-judge annotator "
        "for multi-agent traces (arXiv 2503.13657).",
    )
    add_debug_flag(p)
    sub = p.add_subparsers(dest="cmd", required=True)

    def sp(name, **kw):
        s = sub.add_parser(name, **kw)
        add_debug_flag(s)
        return s

    s = sp("taxonomy", help="print a taxonomy version")
    s.add_argument("--version", default="mast-v3", choices=sorted(tx.VERSIONS))
    s.add_argument("--format", default="md", choices=["md", "json"])
    s.set_defaults(fn=cmd_taxonomy)

    fmt_help = "trace format (auto-detected by default): " + ", ".join(FORMAT_NAMES)
    fmt_type = choice_of(FORMAT_NAMES)
    s = sp("validate", help="load traces and report counts, token estimates, leak fields, secrets")
    s.add_argument("path")
    s.add_argument("--format", default="auto", type=fmt_type, help=fmt_help)
    s.set_defaults(fn=cmd_validate)

    s = sp("normalize", help="convert traces to the canonical JSONL (sanitised by default)")
    s.add_argument("path")
    s.add_argument("-o", "--out", required=True, help=f"output folder: writes OUT/{NORMALIZE_FILE}")
    s.add_argument("--format", default="auto", type=fmt_type, help=fmt_help)
    s.add_argument("--keep-fields", nargs="*", default=[], help="leak fields to keep (escape hatch)")
    s.add_argument("--no-sanitize", action="store_true", help="write traces as loaded")
    s.set_defaults(fn=cmd_normalize)

    s = sp("annotate", help="label traces with the 14 modes using a judge")
    s.add_argument("traces")
    s.add_argument(
        "-o",
        "--out",
        required=True,
        help=f"output folder: OUT/{ANNOTATE_FILE} gets each trace appended (fsync) as it finishes and is "
        "rewritten in input order at the end",
    )
    s.add_argument(
        "--judge",
        required=True,
        help="OpenAI-compatible base URL (http://127.0.0.1:8000/v1), 'hf:LOCAL_MODEL_DIR' or 'stub'",
    )
    s.add_argument("--model", default="", help="model name sent to the HTTP judge")
    s.add_argument("--api-key-env", default="", help="environment variable holding the API key")
    s.add_argument("--format", default="auto", type=fmt_type, help=fmt_help)
    s.add_argument("--layout", default="cache_friendly", choices=["cache_friendly", "paper", "json"])
    s.add_argument(
        "--prompt-pack",
        default="",
        type=lambda x: str(existing_dir(x)) if x else "",
        help="folder with definitions.txt (+ examples.txt)",
    )
    s.add_argument("--few-shot", action="store_true", help="require examples in the prompt pack")
    s.add_argument("--concurrency", type=positive_int, default=8)
    s.add_argument("--samples", type=positive_int, default=1, help="samples per trace (majority vote)")
    s.add_argument("--temperature", type=nonneg_float, default=0.0)
    s.add_argument("--seed", type=nonneg_int, default=0)
    s.add_argument("--max-tokens", type=positive_int, default=1024, help="max output tokens")
    s.add_argument("--max-input-tokens", type=positive_int, default=120_000)
    s.add_argument("--on-overflow", default="error", choices=["error", "truncate", "chunk"])
    s.add_argument("--cache", default=".mast_cache", help="cache folder ('' disables)")
    s.add_argument("--keep-fields", nargs="*", default=[])
    s.add_argument("--timeout", type=positive_float, default=600.0, help="seconds per HTTP request")
    s.add_argument("--retries", type=nonneg_int, default=4)
    s.add_argument(
        "--max-response-bytes",
        type=positive_int,
        default=8 * 2**20,
        help="refuse HTTP response bodies larger than this (default 8 MiB)",
    )
    s.add_argument(
        "--max-consecutive-failures",
        type=nonneg_int,
        default=5,
        help="stop after this many traces in a row fail with a judge error (0: never)",
    )
    s.add_argument(
        "--resume", action="store_true", help="keep the finished annotations in --out; do the rest"
    )
    s.add_argument("--overwrite", action="store_true", help="replace the annotations in --out")
    s.add_argument("--price-input-per-1m", type=nonneg_float, default=0.0, help="USD per 1M prompt tokens")
    s.add_argument(
        "--price-output-per-1m", type=nonneg_float, default=0.0, help="USD per 1M completion tokens"
    )
    s.add_argument(
        "--price-cached-input-per-1m",
        type=nonneg_float,
        default=None,
        help="USD per 1M cached prompt tokens (default: the input price)",
    )
    s.add_argument("--no-structured", action="store_true", help="never send response_format")
    s.add_argument("--stub-style", default="terse", choices=STYLES, help="answer style of --judge stub")
    add_runtime_args(s)  # --device/--threads apply to an hf: judge; --no-progress to every judge
    s.add_argument("--quiet", dest="no_progress", action="store_true", help="alias of --no-progress")
    s.set_defaults(fn=cmd_annotate)

    s = sp("agree", help="agreement between two label sets (annotations or MAD-style files)")
    s.add_argument("reference")
    s.add_argument("predicted")
    s.add_argument("--per-mode", action="store_true")
    s.add_argument("--bootstrap", type=nonneg_int, default=0, help="bootstrap replicates over traces for CIs")
    s.add_argument("--taxonomy", default="mast-v3", choices=sorted(tx.VERSIONS))
    s.set_defaults(fn=cmd_agree)

    s = sp("report", help="failure distribution tables and plots")
    s.add_argument("annotations")
    s.add_argument(
        "--by", default="", type=_by_type, help="comma-separated grouping: mas_name,llm_name,benchmark"
    )
    s.add_argument("--normalize", default="prevalence", choices=["share", "prevalence", "count"])
    s.add_argument(
        "--out",
        default="",
        help="output folder: report.md, report.csv and report.<--plot-format> (default: markdown to stdout)",
    )
    s.add_argument("--plot-format", default="png", choices=_PLOT_FORMATS, help="image format of the plot")
    s.add_argument("--no-plot", action="store_true", help="no plot (matplotlib is in the [bench] extra)")
    s.add_argument("--traces", default="", help="the annotated traces: adds the detector cross-check table")
    s.set_defaults(fn=cmd_report)

    s = sp("detect", help="deterministic detectors (step repetition, reset, missing termination)")
    s.add_argument("traces")
    s.add_argument("--format", default="auto", type=fmt_type, help=fmt_help)
    s.set_defaults(fn=cmd_detect)

    s = sp("stub-server", help="serve the deterministic OpenAI-compatible stub on loopback")
    s.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "localhost", "::1"])
    s.add_argument("--port", type=int_range(0, 65535), default=0)
    s.add_argument("--style", default="terse", choices=STYLES)
    s.add_argument("--prevalence", type=probability, default=0.25)
    s.add_argument("--noise", type=probability, default=0.0)
    s.add_argument("--seed", type=nonneg_int, default=0)
    s.add_argument("--latency", type=nonneg_float, default=0.0, help="seconds per request")
    s.add_argument(
        "--prefill-s-per-token", type=nonneg_float, default=0.0, help="extra seconds per uncached token"
    )
    s.add_argument(
        "--fail-first", default={}, type=_fail_first, help="per-trace faults first, e.g. 429:1,500:1"
    )
    s.add_argument("--max-requests", type=positive_int, default=1_000_000)
    s.set_defaults(fn=cmd_stub_server)

    add_debug_flag(add_bench_command(sub, "mast"))  # `mast bench` = `paperworks-bench --package mast`
    return p


_BY_FIELDS = ("mas_name", "llm_name", "benchmark")


def _by_type(text: str) -> str:
    bad = [x for x in _csv(text) if x not in _BY_FIELDS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown grouping field(s) {bad}; choose from {', '.join(_BY_FIELDS)}"
        )
    return text


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    fn = getattr(args, "fn", None) or args.func  # add_bench_command sets `func`
    return int(fn(args))


def main(argv=None) -> int:
    return run_cli(_main, argv, prog="mast")


if __name__ == "__main__":
    sys.exit(main())
