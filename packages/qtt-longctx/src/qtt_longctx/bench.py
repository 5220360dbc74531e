"""`make bench` entry point: the sandbox testbed, qTTT vs compute-matched decoding, theory checks.

Experiments (CPU, the tiny sandbox model of `sandbox.model`; timings inflated by other jobs on the CPU):

* ``sandbox-model`` — the testbed itself (issue 19.3): in-context accuracy on *validation* items per
  haystack size; it must retrieve reliably at the shortest length (>= 0.8) and degrade with length;
* ``dilution`` — in-context accuracy and needle attention mass against haystack size on the test items;
* ``selection`` — every tuned method gets its grid on the validation split (never test): qTTT's learning
  rate, self-consistency's sampling temperature; thinking and in-context have nothing to tune;
* ``compute-matched`` — in-context vs qTTT vs thinking vs self-consistency at one budget
  B = 2·N·k decode-token-equivalents (Eq. 3.2), per haystack size, paired by seed, with `compare(...)`
  headlines (verdicts computed from the per-seed numbers: holds / reversed / equivalent / underpowered);
* ``theory`` — Lemma 2.2 bound vs measured mass, Prop 3.1 gradient vs finite differences, Lemma 3.2 gain.

A seed s is one whole replicate: the sandbox model trained with seed s, validation and test items drawn
with their own data seeds, qTTT's span sampler and self-consistency's sampler seeded with s. `cpu` runs
one seed (every headline is then "underpowered" by construction: it shows the pipeline and the size of
the effects, it cannot decide them); `full` runs 3 seeds with >= 100 test items per length.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from paperworks_shared.bench import BenchContext, new_figure
from paperworks_shared.stats import compare

from . import theory
from .config import QTTConfig
from .eval import evaluate
from .eval.loaders import _normalise
from .flops import account, thinking_equivalent
from .sandbox import sandbox_dataset, sandbox_model

METHODS = ("in_context", "qttt", "thinking", "self_consistency")
# Equivalence margin, fixed before any run: 5 accuracy points. The paper's smallest headline gain of qTTT
# over FLOP-matched thinking is +6.1 points (LongBench-v2, Qwen3-4B); a difference inside ±0.05 is not
# the effect the paper claims.
DELTA = 0.05
SHORT_CONTEXT_TARGET = 0.8  # issue 19.3: the testbed must retrieve reliably at the shortest length
VAL_SEED, TEST_SEED = 10_000, 20_000  # data seeds: validation and test items never coincide
# haystack sizes (records) per scale; every one lies inside the sandbox model's trained range (tested)
BENCH_RECORDS = {"smoke": [8, 32], "cpu": [8, 32, 128], "full": [8, 32, 128], "gpu": [8, 32, 128, 256]}


def _ds(task: str, sizes: Sequence[int], per: int, seed: int):
    import datasets

    raw = sandbox_dataset(task, list(sizes), per, seed=seed)
    return datasets.Dataset.from_list([_normalise(r, "sandbox", i) for i, r in enumerate(raw)])


def _acc_by_length(results, n_of: dict[str, int], method: str) -> dict[int, float]:
    out: dict[int, list[bool]] = {}
    for r in results:
        if r.method == method:
            out.setdefault(n_of[r.id], []).append(r.correct)
    return {n: sum(v) / len(v) for n, v in sorted(out.items())}


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def run(ctx: BenchContext) -> None:
    torch.set_num_threads(1)
    t_start = time.time()
    sizes = BENCH_RECORDS[ctx.scale]
    n_seeds = ctx.pick(smoke=1, cpu=1, full=3)
    per = ctx.pick(smoke=4, cpu=24, full=100)
    val_per = ctx.pick(smoke=3, cpu=8, full=24)
    # 8 qTTT steps of 8-token spans <-> 128 thinking tokens (Eq. 3.2); the budget is what 2 idle cores
    # can afford for thinking and self-consistency over 3 x 300 test items inside the full tier's 45 min
    steps, span = ctx.pick(smoke=(2, 8), cpu=(8, 8), full=(8, 8))
    budget = thinking_equivalent(steps, span)
    sc_samples = 4
    lr_grid = ctx.pick(smoke=[3e-3], cpu=[1e-3, 3e-3, 1e-2], full=[1e-3, 3e-3, 1e-2, 3e-2])
    # self-consistency's temperature: the paper's 0.7 and plain sampling (cpu: the paper's value only)
    temp_grid = ctx.pick(smoke=[0.7], cpu=[0.7], full=[0.7, 1.0])
    seeds = list(range(n_seeds))

    model_rows: list[dict[str, Any]] = []
    sel_rows: list[dict[str, Any]] = []
    test_rows: list[dict[str, Any]] = []
    mass_rows: list[dict[str, Any]] = []
    acc: dict[str, dict[int, list[float]]] = {m: {n: [] for n in sizes} for m in METHODS}
    mass: dict[str, dict[int, list[float]]] = {m: {n: [] for n in sizes} for m in ("in_context", "qttt")}
    for seed in seeds:
        torch.set_num_threads(2)  # training (first use only) may use both cores; evaluation uses one
        model, tok, train_metrics = sandbox_model(ctx.scale, progress=False, seed=seed)
        torch.set_num_threads(1)
        # --- validation split: the testbed check and every method's selection ------------------------
        val = _ds("kv", sizes, val_per, seed=VAL_SEED + seed)
        n_val = {r["id"]: r["n_pairs"] for r in val}
        base = evaluate(model, tok, val, "sandbox", ["in_context"], budget, None, progress=False, seed=seed)
        ic_val = _acc_by_length(base, n_val, "in_context")
        model_rows += [
            dict(seed=seed, records=n, split="validation", in_context_accuracy=a, n=val_per)
            for n, a in ic_val.items()
        ]
        model_rows[-len(ic_val)]["train_seconds"] = round(train_metrics.get("train_seconds", 0.0), 1)
        best_lr, best_lr_acc = lr_grid[0], -1.0
        for lr in lr_grid:
            cfg = QTTConfig(steps=steps, span_len=span, lr=lr, seed=seed)
            res = evaluate(
                model,
                tok,
                val,
                "sandbox",
                ["qttt"],
                budget,
                cfg,
                progress=False,
                measure_mass=False,
                seed=seed,
            )
            a = _mean(list(_acc_by_length(res, n_val, "qttt").values()))
            sel_rows.append(dict(seed=seed, method="qttt", setting=f"lr={lr:g}", val_accuracy=a))
            if a > best_lr_acc:  # ties keep the smaller lr (the grid is ascending)
                best_lr, best_lr_acc = lr, a
        best_t, best_t_acc = temp_grid[0], -1.0
        for temp in temp_grid:
            if len(temp_grid) == 1:
                break
            res = evaluate(
                model, tok, val, "sandbox", ["self_consistency"], budget, None, sc_samples,
                progress=False, measure_mass=False, seed=seed, temperature=temp,
            )  # fmt: skip
            a = _mean(list(_acc_by_length(res, n_val, "self_consistency").values()))
            sel_rows.append(dict(seed=seed, method="self_consistency", setting=f"T={temp:g}", val_accuracy=a))
            if a > best_t_acc:
                best_t, best_t_acc = temp, a
        sel_rows.append(
            dict(
                seed=seed, method="chosen", setting=f"lr={best_lr:g}, T={best_t:g}", val_accuracy=best_lr_acc
            )
        )
        # --- test split: the four methods at one budget ----------------------------------------------
        test = _ds("kv", sizes, per, seed=TEST_SEED + seed)
        n_test = {r["id"]: r["n_pairs"] for r in test}
        cfg = QTTConfig(steps=steps, span_len=span, lr=best_lr, seed=seed)
        res = evaluate(
            model, tok, test, "sandbox", METHODS, budget, cfg, sc_samples,
            progress=False, seed=seed, temperature=best_t,
        )  # fmt: skip
        for m in METHODS:
            for n, a in _acc_by_length(res, n_test, m).items():
                acc[m][n].append(a)
                test_rows.append(dict(seed=seed, records=n, method=m, accuracy=a, n=per))
        for m in ("in_context", "qttt"):
            for n in sizes:
                vals = [r.needle_mass for r in res if r.method == m and n_test[r.id] == n]
                mass[m][n].append(_mean(vals))
                tokens = round(_mean([r.length for r in res if r.method == m and n_test[r.id] == n]))
                mass_rows.append(
                    dict(seed=seed, records=n, tokens=tokens, method=m, needle_mass=mass[m][n][-1])
                )
        del model

    tokens_of: dict[int, int] = {int(r["records"]): int(r["tokens"]) for r in mass_rows}
    shortest = sizes[0]
    ic_short = [r["in_context_accuracy"] for r in model_rows if r["records"] == shortest]
    ic_long = [r["in_context_accuracy"] for r in model_rows if r["records"] == sizes[-1]]
    reliable = min(ic_short) >= SHORT_CONTEXT_TARGET
    degrades = _mean(ic_long) < _mean(ic_short)
    ctx.record(
        "sandbox-model",
        rows=model_rows,
        metrics=dict(
            short_context_accuracy_min=min(ic_short),
            long_context_accuracy_mean=_mean(ic_long),
            retrieves_at_short_context=reliable,
            degrades_with_length=degrades,
        ),
        params=dict(scale=ctx.scale, seeds=seeds, records=sizes, validation_items_per_length=val_per),
        claim=f"Issue 19.3: the testbed retrieves reliably at the shortest length (in-context accuracy >= "
        f"{SHORT_CONTEXT_TARGET}) and degrades with length, so qTTT is tested where score dilution is the failure.",
        verdict=f"validation in-context accuracy at {shortest} records: "
        + ", ".join(f"{a:.2f}" for a in ic_short)
        + f" (seeds {seeds}); at {sizes[-1]} records: "
        + ", ".join(f"{a:.2f}" for a in ic_long)
        + f". {'Meets' if reliable else 'FAILS'} the >= {SHORT_CONTEXT_TARGET} short-context bar; "
        + ("degrades with length." if degrades else "does NOT degrade with length."),
    )

    # --- dilution ------------------------------------------------------------------------------------
    dil = [
        dict(
            records=n,
            tokens=tokens_of[n],
            accuracy=_mean(acc["in_context"][n]),
            needle_mass=_mean(mass["in_context"][n]),
            seeds=len(seeds),
            n_per_seed=per,
        )
        for n in sizes
    ]
    mass_ratio = dil[-1]["needle_mass"] / dil[0]["needle_mass"]
    fig, ax = new_figure(2, 1)
    ax[0][0].plot([r["tokens"] for r in dil], [r["accuracy"] for r in dil], "o-")
    ax[0][0].set(xscale="log", xlabel="context tokens", ylabel="in-context accuracy", title="kv: accuracy")
    ax[0][1].plot([r["tokens"] for r in dil], [r["needle_mass"] for r in dil], "o-", label="needle mass")
    ax[0][1].plot(
        [r["tokens"] for r in dil],
        [dil[0]["needle_mass"] * dil[0]["tokens"] / r["tokens"] for r in dil],
        "--",
        color="gray",
        label="∝ 1/T from the first point",
    )
    ax[0][1].set(xscale="log", yscale="log", xlabel="context tokens", ylabel="needle attention mass")
    ax[0][1].legend()
    ctx.record(
        "dilution",
        rows=dil,
        metrics=dict(
            mass_ratio_long_over_short=mass_ratio, accuracy_drop=dil[0]["accuracy"] - dil[-1]["accuracy"]
        ),
        claim="§2 / App. E: as the context grows, attention mass on the needle decays (~1/T for fixed margins, "
        "Lemma 2.2) and in-context accuracy falls.",
        verdict=f"in-context accuracy {dil[0]['accuracy']:.2f} -> {dil[-1]['accuracy']:.2f} and needle mass "
        f"{dil[0]['needle_mass']:.3f} -> {dil[-1]['needle_mass']:.3f} (x{mass_ratio:.2f}) from {dil[0]['tokens']} "
        f"to {dil[-1]['tokens']} tokens (test items, mean of {len(seeds)} seed(s)).",
        figure=fig,
    )
    ctx.record(
        "selection",
        rows=sel_rows,
        params=dict(
            grids=dict(
                qttt={"lr": lr_grid},
                self_consistency={"temperature": temp_grid, "samples": sc_samples},
                thinking="greedy, nothing to tune",
                in_context="greedy, nothing to tune",
            ),
            selection="validation accuracy (mean over lengths), never test; ties keep the first grid value",
            validation_items_per_length=val_per,
        ),
        claim="Table 1: qTTT accuracy is insensitive within ~1 decade of the best lr and collapses at the extremes "
        "(the paper picks lr per dataset on held-out data; so do we, and SC's temperature gets its grid too).",
        verdict="chosen per seed: "
        + "; ".join(str(r["setting"]) for r in sel_rows if r["method"] == "chosen")
        + ".",
    )

    # --- compute-matched comparison ------------------------------------------------------------------
    headlines = []
    for n in sizes:
        for base_m in ("thinking", "self_consistency", "in_context"):
            headlines.append(
                compare(
                    acc["qttt"][n],
                    acc[base_m][n],
                    name=f"qttt vs {base_m.replace('_', '-')} @ {n} records",
                    metric="accuracy",
                    delta=DELTA,
                    seeds=seeds,
                )
            )
    # the paper's "the advantage grows with length": (qTTT - thinking) at the longest vs at the shortest
    gain_long = [q - t for q, t in zip(acc["qttt"][sizes[-1]], acc["thinking"][sizes[-1]])]
    gain_short = [q - t for q, t in zip(acc["qttt"][shortest], acc["thinking"][shortest])]
    headlines.append(
        compare(
            gain_long,
            gain_short,
            name=f"qttt-minus-thinking gain @ {sizes[-1]} vs @ {shortest} records",
            metric="accuracy difference",
            delta=DELTA,
            seeds=seeds,
        )
    )
    rows = [
        dict(
            records=n,
            tokens=tokens_of[n],
            method=m,
            accuracy=_mean(acc[m][n]),
            sd=statistics.stdev(acc[m][n]) if len(acc[m][n]) > 1 else None,
            needle_mass=_mean(mass[m][n]) if m in mass else None,
            seeds=len(seeds),
            n_per_seed=per,
        )
        for n in sizes
        for m in METHODS
    ]
    fig, ax = new_figure(2, 1)
    for m in METHODS:
        g = [r for r in rows if r["method"] == m]
        ax[0][0].plot([r["tokens"] for r in g], [r["accuracy"] for r in g], "o-", label=m)
    ax[0][0].set(
        xscale="log", xlabel="context tokens", ylabel="accuracy", title=f"kv, budget {budget} tokens"
    )
    ax[0][0].legend(fontsize=7)
    for m in ("in_context", "qttt"):
        g = [r for r in rows if r["method"] == m]
        ax[0][1].plot([r["tokens"] for r in g], [r["needle_mass"] for r in g], "o-", label=m)
    ax[0][1].set(xscale="log", yscale="log", xlabel="context tokens", ylabel="needle mass (answer step)")
    ax[0][1].legend(fontsize=7)
    longest_tokens = tokens_of[sizes[-1]]
    spent = account(model_config(), longest_tokens, steps, span, 1, spans="uniform").to_dict()
    words = {h["comparison"]: h["verdict"] for h in headlines}
    ctx.record(
        "compute-matched",
        rows=rows
        + [
            dict(seed=r["seed"], records=r["records"], method=r["method"], accuracy=r["accuracy"])
            for r in test_rows
        ],
        columns=[
            "records",
            "tokens",
            "method",
            "accuracy",
            "sd",
            "needle_mass",
            "seeds",
            "n_per_seed",
            "seed",
        ],
        headlines=headlines,
        metrics=dict(
            budget_tokens=budget,
            qttt_steps=steps,
            span=span,
            qttt_flops_at_longest=spent,
            mass_gain_qttt_over_ic={n: _mean(mass["qttt"][n]) - _mean(mass["in_context"][n]) for n in sizes},
        ),
        params=dict(
            sc_samples=sc_samples,
            test_items_per_length_per_seed=per,
            seeds=seeds,
            mode="full W_Q fp32 delta",
            optimizer="adamw, wd 0.01, clip 1.0",
            delta=DELTA,
            delta_reason="5 accuracy points, below the paper's smallest claimed gain over thinking (+6.1)",
            grids=dict(qttt={"lr": lr_grid}, self_consistency={"temperature": temp_grid}),
            selection="validation accuracy, never test",
            budget_rule="Eq. 3.2: thinking B = 2·N·k tokens; self-consistency N samples of B/N tokens",
        ),
        claim="Tables 2-5 / App. G: at a matched FLOP budget qTTT beats thinking and self-consistency on long "
        "contexts, its advantage grows with length, and at short context it can lose (App. E 512-token row).",
        verdict=(
            ""
            if reliable
            else f"TESTBED FAILS the short-context bar (in-context {min(ic_short):.2f} < {SHORT_CONTEXT_TARGET} "
            f"at {shortest} records): these comparisons do not test qTTT's claim. "
        )
        + "; ".join(f"{k}: {v}" for k, v in words.items())
        + f". {len(seeds)} seed(s) x {per} items per length"
        + (
            ""
            if len(seeds) > 1
            else " — one seed decides nothing (run SCALE=full for the powered comparison)"
        )
        + ".",
        figure=fig,
    )

    # --- theory --------------------------------------------------------------------------------------
    trow = []
    for T in ctx.pick(smoke=[16, 256], cpu=[16, 128, 1024, 8192], gpu=[16, 128, 1024, 8192]):
        r = theory.dilution_experiment(T, delta=1.0)
        gen = torch.Generator().manual_seed(T)
        K = torch.randn(T, 16, generator=gen, dtype=torch.float64)
        q = torch.randn(16, generator=gen, dtype=torch.float64)
        fd = theory.finite_difference_gradient(q, K, T // 2)
        an = theory.query_gradient(q, K, T // 2)
        meas, pred = theory.margin_gain(q, K, T // 2, 1e-3)
        trow.append(
            dict(
                T=T,
                needle_mass=r["mass"],
                lemma22_bound=r["bound"],
                prop31_fd_max_err=float((fd - an).abs().max()),
                lemma32_measured=meas,
                lemma32_predicted=pred,
                grad_norm_sq=r["grad_norm_sq"],
            )
        )
    fig, ax = new_figure(1, 1)
    ax[0][0].loglog([r["T"] for r in trow], [r["needle_mass"] for r in trow], "o", label="measured")
    ax[0][0].loglog([r["T"] for r in trow], [r["lemma22_bound"] for r in trow], "-", label="Lemma 2.2 bound")
    ax[0][0].set(xlabel="T", ylabel="needle mass (Δ = 1)")
    ax[0][0].legend()
    worst_fd = max(r["prop31_fd_max_err"] for r in trow)
    worst_rel = max(
        abs(r["lemma32_measured"] - r["lemma32_predicted"]) / r["lemma32_predicted"] for r in trow
    )
    ctx.record(
        "theory",
        rows=trow,
        metrics=dict(prop31_worst_fd_err=worst_fd, lemma32_worst_rel_err=worst_rel),
        claim="Lemma 2.2: α* ≤ 1/(1+m e^-Δ); Prop 3.1: ∇_q ℓ = (μ − k*)/√d; Lemma 3.2: ΔM = η‖∇ℓ‖² + O(η²).",
        verdict=f"bound met with equality for equal-gap distractors at every T; Prop 3.1 vs finite differences "
        f"max error {worst_fd:.1e}; Lemma 3.2 first-order gain within {worst_rel:.1%} at η = 1e-3.",
        figure=fig,
    )
    ctx.record(
        "timing",
        rows=[dict(total_seconds=round(time.time() - t_start, 1))],
        verdict="wall time of the whole benchmark on a shared 2-core CPU (inflated by other jobs).",
    )


def model_config():
    """The sandbox model's config (for the FLOP account; no weights needed)."""
    from paperworks_shared.models import tiny_config

    from .sandbox.model import PRESETS

    return tiny_config("llama", **PRESETS["cpu"].config_overrides())
