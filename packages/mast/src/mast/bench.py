"""`make bench` experiments for MAST (issue 10, deliverable 8; DESIGN.md §3.4 E1-E4, §5.4).

1. parse-accuracy      official-style first-match parser vs ours on synthetic judge outputs (E1)
2. kappa-vs-prevalence κ per mode under a noisy simulated judge at MAD-1242 prevalences (E2)
3. stub-throughput     annotation throughput vs concurrency 1/4/16/64 on the loopback stub + cached re-run (E4)
4. layout-prefix-cache prefix tokens reused, paper vs cache_friendly layout, on the stub's prefix cache (E4)
5. chunk-inflation     OR-aggregation over k chunks inflates prevalence by 1-(1-p)^k (E3)
6. vllm-e2e            real vLLM CPU server end to end, when a vLLM python is available
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .agreement import DegenerateKappaWarning, pooled_metrics
from .annotate import Annotator
from .baseline import official_first_match_parse
from .judges import OpenAICompatibleJudge, StubBehaviour, StubJudge
from .parse import parse_judge_output
from .synthetic import (
    IDS,
    MAD1242_PREVALENCE,
    RESPONSE_STYLES,
    filler_pack,
    human_and_judge,
    judge_response,
    random_truth,
    synthetic_traces,
)


def _fig(ncols=1):
    from paperworks_shared.bench import new_figure

    return new_figure(ncols, 1)


# ------------------------------------------------------------------ 1
def parse_accuracy(ctx) -> None:
    n = ctx.pick(smoke=30, cpu=200, gpu=200)
    rng = random.Random(0)
    rows: list[dict[str, Any]] = []
    for style in RESPONSE_STYLES:
        cells = base_wrong = ours_wrong = ours_none = 0
        for _ in range(n):
            truth = random_truth(rng, 0.3)
            if style == "label_echo_all_yes":
                truth = {m: True for m in IDS}
            resp = judge_response(style, truth, rng)
            base = official_first_match_parse(resp)
            ours = parse_judge_output(resp).labels
            for m in IDS:
                cells += 1
                base_wrong += base[m] != int(truth[m])
                if ours[m] is None:
                    ours_none += 1
                else:
                    ours_wrong += ours[m] != truth[m]
        rows.append(
            {
                "style": style,
                "cells": cells,
                "first_match_wrong_%": 100 * base_wrong / cells,
                "ours_wrong_%": 100 * ours_wrong / cells,
                "ours_unparsed_%": 100 * ours_none / cells,
            }
        )
    tot = {
        k: sum(r[k] * r["cells"] for r in rows) / sum(r["cells"] for r in rows)
        for k in ("first_match_wrong_%", "ours_wrong_%", "ours_unparsed_%")
    }
    echo = next(r for r in rows if r["style"] == "label_echo_all_yes")
    fig, ax = _fig()
    x = np.arange(len(rows))
    ax[0][0].bar(x - 0.2, [r["first_match_wrong_%"] for r in rows], 0.4, label="official-style first-match")
    ax[0][0].bar(x + 0.2, [r["ours_wrong_%"] for r in rows], 0.4, label="mast (wrong)")
    ax[0][0].bar(
        x + 0.2,
        [r["ours_unparsed_%"] for r in rows],
        0.4,
        bottom=[r["ours_wrong_%"] for r in rows],
        label="mast (None, recorded)",
        alpha=0.5,
    )
    ax[0][0].set_xticks(x, [r["style"] for r in rows], rotation=40, ha="right", fontsize=7)
    ax[0][0].set_ylabel("% of (response, mode) cells")
    ax[0][0].legend(fontsize=7)
    worst = max(rows, key=lambda r: r["first_match_wrong_%"])
    ctx.record(
        "parse-accuracy",
        rows=rows,
        metrics={f"overall_{k}": v for k, v in tot.items()},
        params={"n_per_style": n},
        claim="DESIGN.md §0.2/E1: the official first-match parser misreads label-echo outputs (2.5 'IgNOred', "
        "3.2 'NO or Incorrect'), ~14% of cells when every label is yes, misfires on summaries with "
        "'etc.', and silently maps a missing mode to 'no'; a line-anchored last-block parser gets 0 wrong.",
        verdict=f"First-match was wrong on {echo['first_match_wrong_%']:.1f}% of cells for all-yes label echo "
        f"(2/14 = 14.3% expected) and worst on '{worst['style']}' ({worst['first_match_wrong_%']:.1f}%); "
        f"overall {tot['first_match_wrong_%']:.2f}% wrong. Ours: {tot['ours_wrong_%']:.2f}% wrong, "
        f"{tot['ours_unparsed_%']:.2f}% returned as None with an issue (the truncated last line), "
        "never a silent 'no'.",
        figure=fig,
    )


# ------------------------------------------------------------------ 2
def kappa_vs_prevalence(ctx) -> None:
    reps = ctx.pick(smoke=20, cpu=200, gpu=200)
    n_tr = 200
    rng = np.random.default_rng(0)
    res: dict[float, dict[str, list[float]]] = {f: {m: [] for m in IDS} for f in (0.05, 0.10)}
    small_undefined = dict.fromkeys(IDS, 0)
    pooled: dict[float, list[float]] = {0.05: [], 0.10: []}
    acc: dict[float, list[float]] = {0.05: [], 0.10: []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateKappaWarning)
        for _ in range(reps):
            for flip in (0.05, 0.10):
                h, j = human_and_judge(n_tr, flip, rng)
                pm = pooled_metrics(h, j)
                pooled[flip].append(pm["kappa"])
                acc[flip].append(pm["accuracy"])
                for c, m in enumerate(IDS):
                    res[flip][m].append(pooled_metrics(h[:, c : c + 1], j[:, c : c + 1])["kappa"])
            h, j = human_and_judge(30, 0.05, rng)
            for c, m in enumerate(IDS):
                if math.isnan(pooled_metrics(h[:, c : c + 1], j[:, c : c + 1])["kappa"]):
                    small_undefined[m] += 1
    rows: list[dict[str, Any]] = []
    for m in IDS:
        k5 = [k for k in res[0.05][m] if not math.isnan(k)]
        k10 = [k for k in res[0.10][m] if not math.isnan(k)]
        rows.append(
            {
                "mode": m,
                "prevalence_%": 100 * MAD1242_PREVALENCE[m],
                "kappa_flip5": float(np.mean(k5)),
                "kappa_flip5_p2.5": float(np.quantile(k5, 0.025)),
                "kappa_flip5_p97.5": float(np.quantile(k5, 0.975)),
                "kappa_flip10": float(np.mean(k10)),
                "undefined_at_30_traces_%": 100 * small_undefined[m] / reps,
            }
        )
    fig, ax = _fig()
    a = ax[0][0]
    a.errorbar(
        [r["prevalence_%"] for r in rows],
        [r["kappa_flip5"] for r in rows],
        yerr=[
            [r["kappa_flip5"] - r["kappa_flip5_p2.5"] for r in rows],
            [r["kappa_flip5_p97.5"] - r["kappa_flip5"] for r in rows],
        ],
        fmt="o",
        label="5% flips",
    )
    a.plot([r["prevalence_%"] for r in rows], [r["kappa_flip10"] for r in rows], "s", label="10% flips")
    for r in rows:
        a.annotate(r["mode"], (r["prevalence_%"], r["kappa_flip5"]), fontsize=7)
    a.set_xlabel("mode prevalence (% of traces, MAD-1242)")
    a.set_ylabel("Cohen's κ (judge vs human)")
    a.legend(fontsize=7)
    r12, r26 = next(r for r in rows if r["mode"] == "1.2"), next(r for r in rows if r["mode"] == "2.6")
    met = {
        "pooled_kappa_flip5": float(np.mean(pooled[0.05])),
        "pooled_kappa_flip10": float(np.mean(pooled[0.10])),
        "accuracy_flip5": float(np.mean(acc[0.05])),
        "accuracy_flip10": float(np.mean(acc[0.10])),
    }
    ctx.record(
        "kappa-vs-prevalence",
        rows=rows,
        metrics=met,
        params={"replicates": reps, "traces": n_tr},
        claim="DESIGN.md E2 [PROTO]: with 5% i.i.d. flips at MAD-1242 prevalences, accuracy 0.95 and pooled κ≈0.84, "
        "but per-mode κ ≈0.89 for FM-2.6 (40%) vs ≈0.20 for FM-1.2 (0.8%); FM-1.2 κ undefined in ~19% of "
        "30-trace replicates; 10% flips -> pooled κ≈0.70. Explains Table 2's acc 0.94 with κ 0.77.",
        verdict=f"Measured: accuracy {met['accuracy_flip5']:.3f}, pooled κ {met['pooled_kappa_flip5']:.2f} (5% flips), "
        f"{met['pooled_kappa_flip10']:.2f} (10%); per-mode κ {r26['kappa_flip5']:.2f} for 2.6 vs "
        f"{r12['kappa_flip5']:.2f} for 1.2 (95% range {r12['kappa_flip5_p2.5']:.2f}..{r12['kappa_flip5_p97.5']:.2f}); "
        f"1.2 κ undefined in {r12['undefined_at_30_traces_%']:.0f}% of 30-trace replicates. Same accuracy, "
        "very different κ: per-mode κ needs CIs.",
        figure=fig,
    )


# ------------------------------------------------------------------ 3
@contextlib.contextmanager
def stub_process(*args: str):
    """The stub server in a *separate process* (so it does not share the client's GIL); yields its base URL."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "mast.cli", "stub-server", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert proc.stdout is not None  # stdout=PIPE
    try:
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"stub server did not start: {line!r}")
        url = line.split("listening on", 1)[1].strip()

        def stats(reset=False):
            if reset:
                return httpx.post(url + "/stats/reset").json()
            return httpx.get(url + "/stats").json()

        yield url, stats
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def stub_throughput(ctx) -> None:
    latency = ctx.pick(smoke=0.05, cpu=0.2, gpu=0.2)
    n = ctx.pick(smoke=32, cpu=64, gpu=128)
    traces = synthetic_traces(n, turns=4, chars_per_turn=300, seed=1)
    rows: list[dict[str, Any]] = []
    with stub_process("--style", "echo", "--latency", str(latency)) as (url, stats):
        for conc in (1, 4, 16, 64):
            with tempfile.TemporaryDirectory() as d:
                stats(reset=True)
                judge = OpenAICompatibleJudge(url, "stub")
                t0, c0 = time.perf_counter(), time.process_time()
                anns = Annotator(judge, concurrency=conc, cache_dir=d).annotate(traces)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                st = stats(reset=True)
                sent, max_in = st["n_requests"], st["max_in_flight"]
                t1 = time.perf_counter()
                again = Annotator(judge, concurrency=conc, cache_dir=d).annotate(traces)
                cached_wall = time.perf_counter() - t1
                rerun_sent = stats()["n_requests"]
                lat = sorted(a.judge_latency_s for a in anns)
                ideal = min(conc, n) / latency
                rows.append(
                    {
                        "concurrency": conc,
                        "traces": n,
                        "requests": sent,
                        "max_in_flight": max_in,
                        "traces_per_s": n / wall,
                        "ideal_per_s": ideal,
                        "efficiency_%": 100 * n / wall / ideal,
                        "client_cpu_ms_per_trace": 1000 * cpu / n,
                        "p50_s": statistics.median(lat),
                        "p95_s": lat[int(0.95 * (len(lat) - 1))],
                        "ok": sum(a.ok for a in anns),
                        "rerun_requests": rerun_sent,
                        "rerun_cache_hits": sum(a.cache_hit for a in again),
                        "rerun_s": cached_wall,
                    }
                )
    fig, ax = _fig()
    a = ax[0][0]
    a.loglog([r["concurrency"] for r in rows], [r["traces_per_s"] for r in rows], "o-", label="measured")
    a.loglog(
        [r["concurrency"] for r in rows],
        [r["ideal_per_s"] for r in rows],
        "k--",
        label="concurrency / latency",
    )
    a.set_xlabel("concurrency")
    a.set_ylabel("traces / s")
    a.set_title(f"loopback stub, {latency * 1000:.0f} ms per request")
    a.legend(fontsize=7)
    r64, r1 = rows[-1], rows[0]
    effs = ", ".join(f"{r['efficiency_%']:.0f}%" for r in rows)
    inflight = "/".join(str(r["max_in_flight"]) for r in rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu_ms = statistics.mean(r["client_cpu_ms_per_trace"] for r in rows)
    ctx.record(
        "stub-throughput",
        rows=rows,
        params={"stub_latency_s": latency, "traces": n, "load_avg_1min": load},
        metrics={
            "speedup_64_vs_1": r64["traces_per_s"] / r1["traces_per_s"],
            "max_in_flight_ok": all(0 < r["max_in_flight"] <= r["concurrency"] for r in rows),
            "rerun_requests_total": sum(r["rerun_requests"] for r in rows),
        },
        claim="DESIGN.md E4/§5.2: async bounded concurrency gives ≈ concurrency/latency req/s until client overhead "
        "dominates; a cached re-run sends 0 requests (the official pipeline is one synchronous call per trace).",
        verdict=f"{r1['traces_per_s']:.1f} traces/s at concurrency 1 -> {r64['traces_per_s']:.1f} at 64 "
        f"({r64['traces_per_s'] / r1['traces_per_s']:.1f}x; efficiency vs ideal "
        f"{effs}); max in flight {inflight} for caps 1/4/16/64; "
        f"cached re-runs sent {sum(r['rerun_requests'] for r in rows)} requests. Beyond ~16 the client's own "
        f"CPU per trace ({cpu_ms:.0f} ms: sanitize, render, HTTP, parse, cache write) bounds throughput; "
        f"measured on a shared 2-core machine at load average {load:.1f}, so that overhead is inflated.",
        figure=fig,
    )


# ------------------------------------------------------------------ 4
def layout_prefix_cache(ctx) -> None:
    n = ctx.pick(smoke=12, cpu=32, gpu=64)
    traces = synthetic_traces(n, turns=8, chars_per_turn=550, seed=2)  # ~1.1k tokens, the AG2 median
    prefill = ctx.pick(smoke=2e-6, cpu=1e-5, gpu=1e-5)
    rows: list[dict[str, Any]] = []
    from .prompts import PromptPack

    packs = (
        ("builtin (zero-shot)", PromptPack.builtin()),
        ("official-size filler (few-shot)", filler_pack()),
    )
    with stub_process("--style", "terse", "--prefill-s-per-token", str(prefill)) as (url, stats):
        for pack_name, pack in packs:
            for layout in ("paper", "cache_friendly"):
                stats(reset=True)  # also empties the simulated prefix cache
                judge = OpenAICompatibleJudge(url, "stub")
                t0 = time.perf_counter()
                anns = Annotator(judge, layout=layout, prompt_pack=pack, concurrency=4).annotate(traces)
                wall = time.perf_counter() - t0
                st = stats()
                pt, ct = st["prompt_tokens"], st["cached_tokens"]
                rows.append(
                    {
                        "pack": pack_name,
                        "layout": layout,
                        "prompt_tokens_per_req": pt / n,
                        "cached_tokens_per_req": ct / n,
                        "prefix_reuse_%": 100 * ct / pt,
                        "uncached_tokens_per_req": (pt - ct) / n,
                        "traces_per_s": n / wall,
                        "ok": sum(a.ok for a in anns),
                    }
                )
    fig, ax = _fig()
    a = ax[0][0]
    labels = [f"{r['pack'].split(' ')[0]}\n{r['layout']}" for r in rows]
    a.bar(labels, [r["cached_tokens_per_req"] for r in rows], label="cached (prefix reused)")
    a.bar(
        labels,
        [r["uncached_tokens_per_req"] for r in rows],
        bottom=[r["cached_tokens_per_req"] for r in rows],
        label="prefilled",
    )
    a.set_ylabel("prompt tokens per request (chars/4)")
    a.tick_params(axis="x", labelsize=7)
    a.legend(fontsize=7)
    few = [r for r in rows if r["pack"].startswith("official")]
    paper, cf = few[0], few[1]
    ctx.record(
        "layout-prefix-cache",
        rows=rows,
        params={"traces": n, "stub_prefill_s_per_token": prefill, "cache_block_chars": 64},
        metrics={
            "fewshot_prefill_saving_%": 100
            * (1 - cf["uncached_tokens_per_req"] / paper["uncached_tokens_per_req"]),
            "fewshot_cached_tokens_paper": paper["cached_tokens_per_req"],
            "fewshot_cached_tokens_cache_friendly": cf["cached_tokens_per_req"],
        },
        claim="DESIGN.md §5.2.1/E4: the official layout splices the trace before ~20k tokens of definitions+examples, "
        "so only ~0.6k tokens are a shareable prefix; putting the static rubric first (system message) "
        "makes ~21k tokens reusable and removes ~95% of prefill for AG2-length traces.",
        verdict=f"With an official-size few-shot pack (filler text of the same length), the paper layout reused "
        f"{paper['cached_tokens_per_req']:.0f} tokens/request ({paper['prefix_reuse_%']:.0f}%), cache_friendly "
        f"{cf['cached_tokens_per_req']:.0f} ({cf['prefix_reuse_%']:.0f}%): "
        f"{100 * (1 - cf['uncached_tokens_per_req'] / paper['uncached_tokens_per_req']):.0f}% less prefill, "
        f"{cf['traces_per_s'] / paper['traces_per_s']:.1f}x throughput on the stub's simulated prefill cost. "
        "Token counts are chars/4 on a simulated 64-char-block prefix cache, not a real server.",
        figure=fig,
    )


# ------------------------------------------------------------------ 5
def chunk_inflation(ctx) -> None:
    n = ctx.pick(smoke=100, cpu=400, gpu=400)
    p = 0.05
    rows: list[dict[str, Any]] = []
    from .prompts import render

    static = sum(len(m["content"]) for m in render("", "cache_friendly").messages) // 4 + 1
    for k in (1, 2, 4):
        # ~k chunks of <=1000 tokens per trace; each chunk's fenced text differs, so the stub draws an
        # independent false positive per call
        traces = synthetic_traces(n, turns=5 * k, chars_per_turn=700, seed=10 + k, prefix=f"k{k}-")
        judge = StubJudge(StubBehaviour(style="terse", prevalence=p))
        anns = Annotator(
            judge, max_input_tokens=static + 64 + 1000, on_overflow="chunk", concurrency=16
        ).annotate(traces)
        chunks = statistics.mean(a.n_chunks for a in anns)
        prev = float(np.mean([[a.labels[m] for m in IDS] for a in anns]))
        rows.append(
            {
                "chunks_per_trace": chunks,
                "per_call_p": p,
                "measured_prevalence": prev,
                "predicted_1-(1-p)^k": 1 - (1 - p) ** chunks,
                "calls": judge.n_requests,
            }
        )
    fig, ax = _fig()
    ax[0][0].plot(
        [r["chunks_per_trace"] for r in rows], [r["measured_prevalence"] for r in rows], "o", label="measured"
    )
    ks = np.linspace(1, max(r["chunks_per_trace"] for r in rows), 50)
    ax[0][0].plot(ks, 1 - (1 - p) ** ks, "k--", label="1-(1-p)^k")
    ax[0][0].set_xlabel("chunks per trace")
    ax[0][0].set_ylabel("flagged prevalence (no true failures)")
    ax[0][0].legend(fontsize=7)
    ctx.record(
        "chunk-inflation",
        rows=rows,
        params={"traces": n, "p": p},
        claim="DESIGN.md E3: OR-aggregating k chunks with per-call false-positive rate p inflates prevalence by "
        "1-(1-p)^k (+9.8 pp at k=2, +18.5 pp at k=4 for p=0.05).",
        verdict="Measured prevalence "
        + ", ".join(
            f"{r['measured_prevalence']:.3f} at k={r['chunks_per_trace']:.1f} "
            f"(predicted {r['predicted_1-(1-p)^k']:.3f})"
            for r in rows
        )
        + ": chunking changes the estimator, so Annotation records n_chunks.",
        figure=fig,
    )


# ------------------------------------------------------------------ 6
def vllm_python() -> str | None:
    cand = os.environ.get("PAPERWORKS_VLLM_PYTHON") or str(
        Path(__file__).resolve().parents[4] / ".venv-vllm/bin/python"
    )
    return cand if cand and Path(cand).exists() else None


def vllm_e2e(ctx) -> None:
    py = vllm_python()
    if py is None:
        ctx.record(
            "vllm-e2e",
            rows=[
                {
                    "status": "not available",
                    "reason": "no vLLM python: PAPERWORKS_VLLM_PYTHON unset and "
                    ".venv-vllm/bin/python absent (vLLM was not installed here)",
                }
            ],
            claim="Issue 10 §8: end-to-end run against a real vLLM server on CPU when installable.",
            verdict="Not run: vLLM is not installed on this machine. The same OpenAICompatibleJudge code "
            "path is exercised against the loopback stub; `mast annotate --judge URL` targets a "
            "vLLM server unchanged.",
        )
        return
    from .vllm_e2e import run_vllm_e2e

    rows, verdict = run_vllm_e2e(py, n_traces=ctx.pick(smoke=4, cpu=16, gpu=32))
    ctx.record(
        "vllm-e2e",
        rows=rows,
        claim="Issue 10 §8: end-to-end run against a real vLLM server on CPU.",
        verdict=verdict,
    )


EXPERIMENTS = (
    parse_accuracy,
    kappa_vs_prevalence,
    stub_throughput,
    layout_prefix_cache,
    chunk_inflation,
    vllm_e2e,
)


def run(ctx) -> None:
    """Entry point for ``paperworks-bench`` (group ``paperworks.benchmarks``)."""
    for exp in EXPERIMENTS:
        exp(ctx)
