"""Benchmark (``make bench``): the simulation study (E1/E2, position bias, ablations) and an end-to-end
generate -> tournament -> grade run with a tiny model through the transformers and the HTTP backends.

All accuracies are on *mixed* problems (at least one correct and one incorrect candidate), N=16.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .simulation import MethodSpec, default_methods, run_study

COLS = [
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


def _row(rows, label):
    return next(r for r in rows if r["method"] == label)


def bench_mixed(ctx, n_problems):
    from paperworks_shared.bench import new_figure

    rows = run_study(n_problems, 16, "beta", default_methods(), seed=0)
    acc = {r["method"]: r["accuracy"] for r in rows}
    se = max(r["se"] for r in rows)
    v1, pw, p1 = acc["V1 3x"], acc["pointwise BoN (index tie-break)"], acc["Pass@1 (random pick)"]
    rp, ko3 = acc["random pairing 3x"], acc["knockout k=3"]
    fig, ax = new_figure(1, 1, size=(6.5, 4.2))
    a = ax[0][0]
    for prefix, label in (("V1", "V1"), ("random pairing", "random pairing")):
        pts = sorted(
            (r["calls"], r["accuracy"])
            for r in rows
            if r["method"].startswith(prefix + " ") and "bug" not in r["method"]
        )
        a.plot(*zip(*pts), "o-", label=label)
    pts = sorted(
        (r["calls"], r["accuracy"])
        for r in rows
        if r["method"].startswith("pointwise x") or r["method"] == "pointwise BoN (index tie-break)"
    )
    a.plot(*zip(*pts), "s--", label="pointwise (repeated ratings)")
    for lbl, mk in (
        ("knockout k=1", "^"),
        ("knockout k=3", "^"),
        ("round robin (all pairs)", "D"),
        ("Bradley-Terry (random pairs) 3x", "x"),
    ):
        r = _row(rows, lbl)
        a.plot(r["calls"], r["accuracy"], mk, label=lbl)
    a.axhline(p1, color="gray", ls=":", label="Pass@1")
    a.axhline(acc["majority vote"], color="brown", ls=":", label="majority vote")
    a.set_xlabel("verifier calls per problem (N=16)")
    a.set_ylabel("P(selected candidate correct), mixed problems")
    a.legend(fontsize=7)
    verdict = (
        f"V1 3x picks a correct candidate {v1:.3f} of the time vs pointwise {pw:.3f} ({v1 - pw:+.3f}), Pass@1 "
        f"{p1:.3f} ({v1 - p1:+.3f}) and random pairing 3x {rp:.3f} ({v1 - rp:+.3f}); SE <= {se:.3f}. "
        f"Knockout k=3 ({_row(rows, 'knockout k=3')['calls']:.0f} calls, {_row(rows, 'knockout k=3')['rounds']:.0f} rounds) "
        f"reaches {ko3:.3f} ({ko3 - v1:+.3f} vs V1 3x at {_row(rows, 'V1 3x')['rounds']:.1f} rounds) - "
        f"{'close to' if abs(ko3 - v1) <= 2.5 * se else ('better than' if ko3 > v1 else 'worse than')} V1, as the design notes' prototype found. "
        f"The main-text sign (bug) drops V1 to {acc['V1 3x, main-text sign (bug)']:.3f}, below Pass@1."
    )
    ctx.record(
        "simulation-mixed",
        rows=rows,
        columns=COLS,
        figure=fig,
        params={"N": 16, "problems": n_problems, "regime": "p ~ Beta(0.8, 0.8), mixed only", "seed": 0},
        metrics={"v1_3x": v1, "pointwise": pw, "pass1": p1, "random_pairing_3x": rp, "knockout_k3": ko3},
        claim="Pairwise self-verification (V1-Infer) beats pointwise self-verification and Pass@1 clearly, and "
        "beats random pairing at equal budget (paper: +4..+10 pts vs pointwise; +3.8 vs random at 3x).",
        verdict=verdict,
    )
    return rows


def bench_regimes(ctx, n_problems):
    from paperworks_shared.bench import new_figure

    specs = [MethodSpec(f"V1 {b}x", "v1", b) for b in (1, 2, 3)]
    specs += [MethodSpec(f"random pairing {b}x", "random_pairing", b) for b in (1, 2, 3)]
    specs += [MethodSpec("knockout k=3", "knockout", kwargs={"k": 3})]
    ps = (0.1, 0.3, 0.6)
    all_rows, diffs = [], []
    fig, ax = new_figure(3, 1, size=(4.2, 3.4))
    for c, p in enumerate(ps):
        rows = run_study(n_problems, 16, p, specs, seed=10 + c)
        for r in rows:
            r["p"] = p
        all_rows += rows
        acc = {r["method"]: r["accuracy"] for r in rows}
        diffs += [acc[f"V1 {b}x"] - acc[f"random pairing {b}x"] for b in (1, 2, 3)]
        a = ax[0][c]
        a.plot([16, 32, 48], [acc[f"V1 {b}x"] for b in (1, 2, 3)], "o-", label="V1")
        a.plot([16, 32, 48], [acc[f"random pairing {b}x"] for b in (1, 2, 3)], "s--", label="random pairing")
        a.plot([45], [acc["knockout k=3"]], "^", label="knockout k=3")
        a.set_title(f"N=16, p={p}")
        a.set_xlabel("verifier calls")
        a.legend(fontsize=7)
    ax[0][0].set_ylabel("selection accuracy (mixed)")
    se = max(r["se"] for r in all_rows)
    at3 = [d for k, d in enumerate(diffs) if k % 3 == 2]
    ctx.record(
        "simulation-regimes",
        rows=all_rows,
        columns=["p"] + COLS,
        figure=fig,
        params={"N": 16, "problems_per_regime": n_problems, "p": list(ps)},
        metrics={"v1_minus_random_mean": float(np.mean(diffs)), "v1_minus_random_3x": at3},
        claim="Uncertainty-guided Swiss pairing beats random pairing at equal budget (paper ablation: 76.3 vs 72.5 at 3x).",
        verdict=(
            f"V1 minus random pairing over 3 regimes x 3 budgets: mean {np.mean(diffs):+.3f} "
            f"(min {min(diffs):+.3f}, max {max(diffs):+.3f}); at 3x {', '.join(f'{d:+.3f}' for d in at3)} for "
            f"p = {ps}; per-row SE <= {se:.3f}. "
            + ("V1 is ahead in every cell." if min(diffs) > 0 else "V1 is not ahead in every cell.")
        ),
    )


def bench_position(ctx, n_problems):
    beta = 0.75
    specs = [
        MethodSpec(f"V1 3x, position={m}", "v1", 3, config={"position": m})
        for m in ("fixed", "random", "both")
    ]
    specs += [MethodSpec("random pairing 3x, fixed", "random_pairing", 3)]
    rows = run_study(n_problems, 16, 0.3, specs, seed=20, judge_kwargs={"position_bias": beta})
    ref = run_study(n_problems, 16, 0.3, [MethodSpec("V1 3x, no bias (reference)", "v1", 3)], seed=20)
    pf = run_study(
        n_problems,
        16,
        0.3,
        [
            MethodSpec(
                f"V1 3x, 20% parse failures, on_parse_error={m}", "v1", 3, config={"on_parse_error": m}
            )
            for m in ("tie", "skip", "retry")
        ],
        seed=20,
        judge_kwargs={"parse_failure_rate": 0.2},
    )
    rows = ref + rows + pf
    acc = {r["method"]: r["accuracy"] for r in rows}
    cost = acc["V1 3x, no bias (reference)"] - acc["V1 3x, position=fixed"]
    ctx.record(
        "position-and-parse-failures",
        rows=rows,
        columns=COLS,
        params={"N": 16, "p": 0.3, "position_bias_latent": beta, "problems": n_problems},
        claim="Not in the paper (reviewers flagged the missing swap ablation). Notes: position bias costs 2-6 points; "
        "random swapping did not help in the prototype; 'both orders' was not simulated.",
        verdict=(
            f"Slot-A bias of {beta} latent units costs V1 3x {cost:+.3f} (fixed order). Random swap: "
            f"{acc['V1 3x, position=random']:.3f}; both orders with consistency gating (half the pairs for the same "
            f"calls): {acc['V1 3x, position=both']:.3f}; fixed: {acc['V1 3x, position=fixed']:.3f}. With 20% parse "
            f"failures: tie {acc['V1 3x, 20% parse failures, on_parse_error=tie']:.3f}, skip "
            f"{acc['V1 3x, 20% parse failures, on_parse_error=skip']:.3f}, retry "
            f"{acc['V1 3x, 20% parse failures, on_parse_error=retry']:.3f}."
        ),
    )


def bench_ablations(ctx, n_problems):
    specs = [
        MethodSpec("V1 3x (weighted, code key)", "v1", 3),
        MethodSpec("V1 3x unweighted (w = 1)", "v1", 3, config={"weighted": False}),
        MethodSpec("V1 3x paper key (gap first)", "v1", 3, config={"swiss_key": "gap_first"}),
        MethodSpec("V1 3x final tie-break by index", "v1", 3, config={"final_tiebreak": "index"}),
    ]
    rows = run_study(n_problems, 16, 0.3, specs, seed=30)
    acc = [r["accuracy"] for r in rows]
    se = max(r["se"] for r in rows)
    ctx.record(
        "ablations",
        rows=rows,
        columns=COLS,
        params={"N": 16, "p": 0.3, "problems": n_problems},
        claim="Not ablated in the paper: margin weighting and the Swiss partner key. Notes: no measurable difference.",
        verdict=(
            f"Spread across the variants: {max(acc) - min(acc):.3f} (row SE ~{se:.3f}): "
            + (
                "within noise, as the design notes' prototype found."
                if max(acc) - min(acc) <= 3 * se
                else "larger than noise."
            )
        ),
    )


def _arith_problems(k, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        a, b = (int(x) for x in rng.integers(1, 50, size=2))
        out.append((f"What is {a} + {b}?", str(a + b)))
    return out


def bench_e2e(ctx, n_problems, n_cands, max_tokens):
    """generate -> tournament -> grade with a random-init tiny Llama (byte tokenizer) via HF and via HTTP."""
    import torch

    from paperworks_shared.models import byte_tokenizer, tiny_causal_lm

    from .backends.base import SamplingParams
    from .backends.hf import HFGenerator
    from .backends.openai_compat import OpenAICompatGenerator
    from .config import TournamentConfig
    from .driver import V1Infer
    from .generation import sample_candidates
    from .graders.math import math_equal
    from .judges.llm import LLMPairwiseJudge, LLMPointwiseJudge
    from .serve import ServerThread, make_server

    torch.set_num_threads(1)
    probs = _arith_problems(n_problems, 0)
    texts = [p for p, _ in probs]
    hf = HFGenerator(tiny_causal_lm("llama", seed=0), byte_tokenizer(), batch_size=64, max_prompt_tokens=768)
    rows = []

    def one(label, gen):
        t0 = time.perf_counter()
        cands = sample_candidates(gen, texts, task="math", n=n_cands, max_tokens=max_tokens, seed=0)
        t_gen = time.perf_counter() - t0
        judge = LLMPairwiseJudge(gen, "math", max_tokens=max_tokens, seed=0)
        t0 = time.perf_counter()
        res = V1Infer(judge, TournamentConfig(budget_multiplier=1.0)).rank_many(texts, cands)
        t_judge = time.perf_counter() - t0
        pj = LLMPointwiseJudge(gen, "math", max_tokens=max_tokens, seed=0)
        t0 = time.perf_counter()
        pres = V1Infer(point_judge=pj, method="pointwise").rank_many(texts, cands)
        t_point = time.perf_counter() - t0
        correct = [[math_equal(c.meta.get("answer"), ref) for c in cs] for cs, (_, ref) in zip(cands, probs)]
        calls = sum(r.calls for r in res)
        rows.append(
            {
                "backend": label,
                "problems": n_problems,
                "N": n_cands,
                "gen_samples_per_s": n_problems * n_cands / t_gen,
                "pair_calls": calls,
                "pair_rounds": max(r.rounds for r in res),
                "pair_calls_per_s": calls / t_judge,
                "point_calls_per_s": sum(r.calls for r in pres) / t_point,
                "parse_failure_rate": judge.parse_failure_rate,
                "errors": sum(len(r.errors) for r in res),
                "pass@1": float(np.mean([np.mean(c) for c in correct])),
                "selected_correct": float(np.mean([c[r.best_index] for c, r in zip(correct, res)])),
            }
        )

    one("transformers (in-process)", hf)
    with ServerThread(make_server(hf, "tiny-llama", batch_window=0.05)) as srv:
        client = OpenAICompatGenerator(srv.url, "tiny-llama", concurrency=64, timeout=60)
        client.generate(["warm-up"], SamplingParams(max_tokens=2))
        one("OpenAI-compatible HTTP (127.0.0.1)", client)
        batches = list(srv.server.batcher.batches)
    r0, r1 = rows
    ctx.record(
        "e2e-tiny-model",
        rows=rows,
        params={
            "model": "random-init tiny Llama (hidden 64, 2 layers), byte tokenizer",
            "max_tokens": max_tokens,
            "budget": "1x",
            "http_server_batches": batches[:20],
        },
        claim="Plumbing: one engine call per tournament round across problems; pairwise prompts are ~2x longer "
        "than pointwise, so expect about half the judge throughput.",
        verdict=(
            f"All {r0['pair_calls']} pairwise calls completed on both backends ({r0['errors'] + r1['errors']} "
            f"errors). Pairwise vs pointwise judge throughput: {r0['pair_calls_per_s']:.1f} vs "
            f"{r0['point_calls_per_s']:.1f} calls/s (transformers), {r1['pair_calls_per_s']:.1f} vs "
            f"{r1['point_calls_per_s']:.1f} (HTTP). The untrained model never emits rating tags (parse-failure "
            f"rate {r0['parse_failure_rate']:.2f}, all turned into 5/5 ties by the default policy) and never "
            f"answers correctly (Pass@1 {r0['pass@1']:.2f}): this row measures plumbing and throughput only. "
            f"Timings are inflated by other jobs sharing the 2 CPU cores."
        ),
    )


def pairrl_verdict(summary: list[dict], seeds: int, n_problems: int) -> str:
    """Honest reading of the study table: the warm start's quality, then each RL mode against it."""
    by = {r["model"]: r for r in summary}
    w = by["warm start (SFT)"]
    parts = [
        f"Warm start: Pass@1 {w['pass@1']:.3f} (chance {1 / world_mod():.2f}), pairwise verifier acc "
        f"{w['verifier_acc']:.3f} (ties count 1/2), V1 pick correct (all problems) {w['v1_selected_correct']:.3f}"
    ]
    for m in ("pair RL", "point RL", "rl RL"):
        if m in by:
            r = by[m]
            parts.append(
                f"{m}: Pass@1 {r['pass@1']:.3f}±{r['pass@1_sd']:.3f}, verifier {r['verifier_acc']:.3f}"
                f"±{r['verifier_acc_sd']:.3f}, V1 pick correct (all problems) {r['v1_selected_correct']:.3f}"
                f"±{r['v1_selected_correct_sd']:.3f}"
            )
    if "pair RL" in by and "point RL" in by:
        d_sel = by["pair RL"]["v1_selected_correct"] - by["point RL"]["v1_selected_correct"]
        d_ver = by["pair RL"]["verifier_acc"] - by["point RL"]["verifier_acc"]
        # noise: 2 binomial standard errors of the difference (n problems x seeds), or the seed spread
        p1, p2 = by["pair RL"]["v1_selected_correct"], by["point RL"]["v1_selected_correct"]
        se = float(np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / max(1, n_problems * seeds)))
        sd = max(by["pair RL"]["v1_selected_correct_sd"], by["point RL"]["v1_selected_correct_sd"], 2 * se)
        call = "within noise" if abs(d_sel) <= sd else ("PairRL ahead" if d_sel > 0 else "PointRL ahead")
        parts.append(
            f"PairRL - PointRL: V1 pick correct {d_sel:+.3f}, verifier acc {d_ver:+.3f} ({call}, {seeds} seed(s))"
        )
    return "; ".join(parts) + ". Tiny byte model on (a+b) mod 5; not evidence about the paper's scale."


def reward_trend(logs: dict) -> dict:
    """Per mode: mean generator reward of the first and the last 5 RL steps, averaged over seeds."""
    out = {}
    for mode in ("pair", "point", "rl"):
        runs = [v for k, v in logs.items() if k.split("/")[0] == mode and v]
        if runs:
            first = np.mean([np.mean([x["gen_reward"] for x in r[:5]]) for r in runs])
            last = np.mean([np.mean([x["gen_reward"] for x in r[-5:]]) for r in runs])
            out[mode] = (float(first), float(last))
    return out


def world_mod() -> int:
    from .pairrl import world

    return world.MOD


# Equivalence margin for PairRL vs a baseline on V1 pick accuracy, fixed before any run: half of the
# smallest gain the paper claims (+6.5 points vs PointRL); a difference inside ±0.03 cannot support it.
PAIRRL_DELTA = 0.03


def bench_pairrl(ctx, cfg, lrs: tuple[float, ...], eval_every: int, val_problems: int) -> None:
    """Issue 9 / 19 study: PairRL vs PointRL vs RL-only on the small world (same warm start per seed,
    equal rollout budget 4+4 vs 8), every mode tuned on the same lr grid and step budget, the checkpoint
    chosen on validation problems, scored on test problems; paired per-seed headlines."""
    from paperworks_shared.stats import compare, convergence

    from .pairrl.runner import SELECT_METRIC, plot_summary, run_tuned_study, summarize

    t0 = time.perf_counter()
    rows, extra = run_tuned_study(cfg, lrs, eval_every=eval_every, val_problems=val_problems)
    summary = summarize(rows)
    fig = plot_summary(summary)
    seeds = list(cfg.seeds)

    def per_seed(model: str) -> list[float]:
        by = {r["seed"]: r[SELECT_METRIC] for r in rows if r["model"] == model}
        return [float(by[s]) for s in seeds]

    headlines = []
    for base in ("point", "rl"):
        if "pair" in cfg.modes and base in cfg.modes:
            headlines.append(
                compare(
                    per_seed("pair RL"),
                    per_seed(f"{base} RL"),
                    name=f"PairRL vs {'PointRL' if base == 'point' else 'RL-only'} (small world)",
                    metric=SELECT_METRIC,
                    delta=PAIRRL_DELTA,
                    seeds=seeds,
                )
            )
    conv = {m: convergence(extra["best_steps"][m], cfg.steps) for m in cfg.modes}
    words = "; ".join(
        f"{h['comparison']}: {h['diff_mean']:+.3f} "
        + (f"[{h['ci_low']:+.3f}, {h['ci_high']:+.3f}]" if h["ci_low"] is not None else "(no interval)")
        + f" over {h['n_seeds']} seed(s) -> {h['verdict']}"
        + (f" (about {h['seeds_needed']} seeds would decide it)" if h["seeds_needed"] else "")
        for h in headlines
    )
    ctx.record(
        "pairrl-small-world",
        rows=summary,
        params={
            "backend": cfg.backend,
            "seeds": seeds,
            "sft_steps": cfg.sft_steps,
            "rl_steps": cfg.steps,
            "problems_per_step": cfg.problems_per_step,
            "rollouts": f"{cfg.solver_rollouts}+{cfg.judge_rollouts} (rl: {2 * cfg.solver_rollouts}+0)",
            "grids": {m: {"lr": list(lrs)} for m in cfg.modes},
            "selection": f"validation {SELECT_METRIC} ({val_problems} problems, seed 20000+s) at step 0 and "
            f"every {eval_every} steps, best (lr, step) kept; never test",
            "eval_problems": cfg.eval_problems,
            "budget": cfg.budget,
            "delta": PAIRRL_DELTA,
            "model": "tiny Llama (2 layers, hidden 64) + byte tokenizer, warm-started here",
            "task": f"(a+b) mod {world_mod()}, compact judge format",
        },
        metrics={
            "per_seed_rows": rows,
            "best_steps": extra["best_steps"],
            "chosen_lr": extra["chosen_lr"],
            "val_curves": extra["val_curves"],
            "sft": {str(k): v for k, v in extra["sft"].items()},
            "wall_s": time.perf_counter() - t0,
        },
        claim="PairRL (co-trained pairwise verifier) beats PointRL by +6.5..+7.3 pts at 2x test-time budget and "
        "RL-only by +1.9..+8.9 (Qwen3-4B, code); this tiny world only checks the mechanism's direction.",
        verdict=pairrl_verdict(summary, len(seeds), cfg.eval_problems) + " Paired over seeds (test problems, "
        f"checkpoints chosen on validation): {words}.",
        figure=fig,
        headlines=headlines,
        convergence=conv,
    )


def run(ctx) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    n_mixed = ctx.pick(smoke=40, cpu=500, gpu=1000)
    n_reg = ctx.pick(smoke=30, cpu=300, gpu=600)
    bench_mixed(ctx, n_mixed)
    bench_regimes(ctx, n_reg)
    bench_position(ctx, ctx.pick(smoke=30, cpu=300, gpu=600))
    bench_ablations(ctx, ctx.pick(smoke=30, cpu=300, gpu=600))
    bench_e2e(
        ctx,
        ctx.pick(smoke=2, cpu=4, gpu=8),
        ctx.pick(smoke=4, cpu=8, gpu=16),
        ctx.pick(smoke=8, cpu=16, gpu=64),
    )
    from .pairrl.runner import RunConfig

    bench_pairrl(
        ctx,
        RunConfig(
            # cpu: 1 seed (an uncached warm start costs ~3 min; the verdict is then "underpowered" by
            # construction); full: 5 seeds, the powered comparison (~30 min on 2 idle cores)
            seeds=ctx.pick(smoke=(0, 1, 2), cpu=(0,), full=(0, 1, 2, 3, 4)),
            sft_steps=ctx.pick(smoke=20, cpu=3000, full=3000),
            steps=ctx.pick(smoke=4, cpu=30, full=60),
            problems_per_step=ctx.pick(smoke=4, cpu=16, full=16),
            eval_problems=ctx.pick(smoke=8, cpu=80, full=200),
            cache_warm_start=True,
        ),
        lrs=ctx.pick(smoke=(1e-3, 3e-3), cpu=(1e-3,), full=(5e-4, 1e-3, 2e-3)),
        eval_every=ctx.pick(smoke=2, cpu=10, full=10),
        val_problems=ctx.pick(smoke=4, cpu=40, full=64),
    )
