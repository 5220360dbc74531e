"""The ``mast`` console script: taxonomy, validate, normalize, annotate, agree, report, detect, stub-server, bench."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from . import taxonomy as tx


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()] if s else []


def cmd_taxonomy(a) -> int:
    t = tx.get(a.version)
    print(json.dumps(t.to_dict(), indent=1) if a.format == "json" else t.to_markdown())
    return 0


def cmd_validate(a) -> int:
    from .budget import char_estimate
    from .detectors import detect
    from .traces import detect_format, load_traces, sanitize_trace

    fmt = detect_format(a.path) if a.format == "auto" else a.format
    traces = load_traces(a.path, fmt)
    empty = [t.trace_id for t in traces if not t.text().strip()]
    toks = sorted(char_estimate(t.text()) for t in traces)
    leaks, secrets = {}, 0
    for t in traces:
        _, rep = sanitize_trace(t)
        for k in rep.leak_fields_removed + t.metadata.get("removed_fields", []):
            leaks[k] = leaks.get(k, 0) + 1
        leaks["<text pairs>"] = leaks.get("<text pairs>", 0) + rep.leak_pairs_redacted
        secrets += rep.secrets_redacted
    det = {}
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


def cmd_normalize(a) -> int:
    from .traces import load_traces, sanitize_trace, save_traces

    traces = load_traces(a.path, a.format)
    if not a.no_sanitize:
        out = []
        for t in traces:
            clean, rep = sanitize_trace(t, keep_fields=set(a.keep_fields))
            clean.labels = t.labels  # reference labels stay in the file; they are never rendered into prompts
            clean.metadata["sanitize"] = rep.to_dict()
            out.append(clean)
        traces = out
    save_traces(traces, a.output)
    print(f"wrote {len(traces)} traces to {a.output}", file=sys.stderr)
    return 0


def _make_judge(a):
    from .judges import HFLocalJudge, OpenAICompatibleJudge, StubBehaviour, StubJudge

    if a.judge == "stub":
        return StubJudge(StubBehaviour(style=a.stub_style))
    if a.judge.startswith("hf:"):
        return HFLocalJudge.from_dir(a.judge[3:], device=a.device)
    if not a.model:
        raise SystemExit("--model is required with an HTTP judge URL")
    key = os.environ.get(a.api_key_env) if a.api_key_env else None
    return OpenAICompatibleJudge(
        a.judge,
        a.model,
        api_key=key,
        timeout_s=a.timeout,
        max_retries=a.retries,
        structured_output=not a.no_structured,
    )


def cmd_annotate(a) -> int:
    from .annotate import Annotator, save_annotations
    from .prompts import PromptPack
    from .traces import load_traces

    traces = load_traces(a.traces, a.format)
    pack = PromptPack.from_dir(a.prompt_pack) if a.prompt_pack else None
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
        progress=True,
    )
    res = ann.annotate(traces)
    save_annotations(res, a.output)
    n_err = sum(not r.ok for r in res)
    n_none = sum(v is None for r in res if r.ok for v in r.labels.values())
    print(
        json.dumps(
            {
                "annotated": len(res) - n_err,
                "errors": n_err,
                "unparsed_cells": n_none,
                "judge_calls": ann.n_judge_calls,
                "cache_hits": sum(r.cache_hit for r in res),
                "output": str(a.output),
            }
        ),
        file=sys.stderr,
    )
    return 1 if n_err else 0


def _labels_by_id(path) -> dict[str, dict]:
    from .annotate import load_annotations
    from .traces import load_traces

    try:
        return {x.trace_id: x.labels for x in load_annotations(path)}
    except (ValueError, TypeError):
        return {t.trace_id: {k: bool(v) for k, v in t.labels.items()} for t in load_traces(path) if t.labels}


def cmd_agree(a) -> int:
    from . import agreement as ag
    from . import report as rp

    ref, pred = _labels_by_id(a.reference), _labels_by_id(a.predicted)
    ids = sorted(set(ref) & set(pred))
    if not ids:
        raise SystemExit(f"no trace_id in common between {a.reference} and {a.predicted}")
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


def cmd_report(a) -> int:
    from . import report as rp
    from .annotate import load_annotations

    anns = load_annotations(a.annotations)
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
        from .traces import load_traces

        rows_cc = cross_check(load_traces(a.traces), anns)
        for r in rows_cc:
            r["disagree_ids"] = ",".join(r["disagree_ids"][:5])
        md += "\n## Deterministic detectors vs judge\n\n" + rp.to_markdown(rows_cc)
    if a.md:
        Path(a.md).write_text(md)
    else:
        print(md)
    if a.csv:
        Path(a.csv).write_text(rp.to_csv(rows))
    if a.plot:
        rp.plot(rows, a.normalize, by, path=a.plot)
    return 0


def cmd_detect(a) -> int:
    from .detectors import detect
    from .traces import load_traces

    for t in load_traces(a.traces, a.format):
        hits = [f.__dict__ for f in detect(t) if f.present]
        print(json.dumps({"trace_id": t.trace_id, "findings": hits}))
    return 0


def cmd_stub_server(a) -> int:
    from .judges import StubBehaviour, StubServer

    fail = {int(k): int(v) for k, v in (x.split(":") for x in _csv(a.fail_first))}
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


def cmd_bench(a) -> int:
    from paperworks_shared.bench import BenchContext

    from .bench import run

    ctx = BenchContext("mast", a.scale, a.results)
    run(ctx)
    for r in ctx.records:
        print(f"{r.experiment}: {r.verdict}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mast",
        description="MAST failure taxonomy and LLM-as-a-judge annotator "
        "for multi-agent traces (arXiv 2503.13657).",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("taxonomy", help="print a taxonomy version")
    s.add_argument("--version", default="mast-v3", choices=sorted(tx.VERSIONS))
    s.add_argument("--format", default="md", choices=["md", "json"])
    s.set_defaults(fn=cmd_taxonomy)

    fmt_help = (
        "trace format (auto-detected by default): auto, ag2, hyperagent, chatdev, metagpt, openmanus, "
        "appworld, magentic, messages, otel, openinference, mad, mad_human, jsonl"
    )
    s = sub.add_parser(
        "validate", help="load traces and report counts, token estimates, leak fields, secrets"
    )
    s.add_argument("path")
    s.add_argument("--format", default="auto", help=fmt_help)
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("normalize", help="convert traces to the canonical JSONL (sanitised by default)")
    s.add_argument("path")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--format", default="auto", help=fmt_help)
    s.add_argument("--keep-fields", nargs="*", default=[], help="leak fields to keep (escape hatch)")
    s.add_argument("--no-sanitize", action="store_true", help="write traces as loaded")
    s.set_defaults(fn=cmd_normalize)

    s = sub.add_parser("annotate", help="label traces with the 14 modes using a judge")
    s.add_argument("traces")
    s.add_argument("-o", "--output", required=True, help="annotations JSONL")
    s.add_argument(
        "--judge",
        required=True,
        help="OpenAI-compatible base URL (http://127.0.0.1:8000/v1), 'hf:LOCAL_MODEL_DIR' or 'stub'",
    )
    s.add_argument("--model", default="", help="model name sent to the HTTP judge")
    s.add_argument("--api-key-env", default="", help="environment variable holding the API key")
    s.add_argument("--format", default="auto", help=fmt_help)
    s.add_argument("--layout", default="cache_friendly", choices=["cache_friendly", "paper", "json"])
    s.add_argument("--prompt-pack", default="", help="folder with definitions.txt (+ examples.txt)")
    s.add_argument("--few-shot", action="store_true", help="require examples in the prompt pack")
    s.add_argument("--concurrency", type=int, default=8)
    s.add_argument("--samples", type=int, default=1, help="samples per trace (majority vote)")
    s.add_argument("--temperature", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-tokens", type=int, default=1024, help="max output tokens")
    s.add_argument("--max-input-tokens", type=int, default=120_000)
    s.add_argument("--on-overflow", default="error", choices=["error", "truncate", "chunk"])
    s.add_argument("--cache", default=".mast_cache", help="cache folder ('' disables)")
    s.add_argument("--keep-fields", nargs="*", default=[])
    s.add_argument("--timeout", type=float, default=600.0)
    s.add_argument("--retries", type=int, default=4)
    s.add_argument("--no-structured", action="store_true", help="never send response_format")
    s.add_argument("--stub-style", default="terse", help="answer style of --judge stub")
    s.add_argument("--device", default="cpu", help="device of an hf: judge")
    s.set_defaults(fn=cmd_annotate)

    s = sub.add_parser("agree", help="agreement between two label sets (annotations or MAD-style files)")
    s.add_argument("reference")
    s.add_argument("predicted")
    s.add_argument("--per-mode", action="store_true")
    s.add_argument("--bootstrap", type=int, default=0, help="bootstrap replicates over traces for CIs")
    s.add_argument("--taxonomy", default="mast-v3")
    s.set_defaults(fn=cmd_agree)

    s = sub.add_parser("report", help="failure distribution tables and plots")
    s.add_argument("annotations")
    s.add_argument("--by", default="", help="comma-separated grouping: mas_name,llm_name,benchmark")
    s.add_argument("--normalize", default="prevalence", choices=["share", "prevalence", "count"])
    s.add_argument("--md", default="")
    s.add_argument("--csv", default="")
    s.add_argument("--plot", default="")
    s.add_argument("--traces", default="", help="the annotated traces: adds the detector cross-check table")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("detect", help="deterministic detectors (step repetition, reset, missing termination)")
    s.add_argument("traces")
    s.add_argument("--format", default="auto", help=fmt_help)
    s.set_defaults(fn=cmd_detect)

    s = sub.add_parser("stub-server", help="serve the deterministic OpenAI-compatible stub on loopback")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--style", default="terse")
    s.add_argument("--prevalence", type=float, default=0.25)
    s.add_argument("--noise", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    s.add_argument("--prefill-s-per-token", type=float, default=0.0, help="extra seconds per uncached token")
    s.add_argument("--fail-first", default="", help="per-trace faults first, e.g. 429:1,500:1")
    s.add_argument("--max-requests", type=int, default=1_000_000)
    s.set_defaults(fn=cmd_stub_server)

    s = sub.add_parser("bench", help="run the MAST benchmarks")
    s.add_argument("--scale", default="smoke", choices=["smoke", "cpu", "gpu"])
    s.add_argument("--results", default="benchmarks/results")
    s.set_defaults(fn=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"mast {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
