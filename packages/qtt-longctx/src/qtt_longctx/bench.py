"""`make bench` entry point: score dilution, qTTT vs compute-matched decoding, theory checks (issue 6 item 6).

Experiments (all on CPU with the tiny sandbox model; timings are inflated by other jobs sharing the CPU):

* ``dilution`` — in-context accuracy and needle attention mass on the kv task against haystack size,
  with the Lemma 2.2 curve for reference (expect both to fall);
* ``lr_sweep`` — qTTT learning rate chosen on held-out sandbox contexts (the paper tunes lr per dataset);
* ``compute_matched`` — in-context vs qTTT vs thinking vs self-consistency at one budget
  B = 2·N·k decode-token-equivalents, per context length (paper: qTTT's edge grows with length);
* ``theory`` — Lemma 2.2 bound vs measured mass, Prop 3.1 gradient vs finite differences, Lemma 3.2 gain.
"""

from __future__ import annotations

import math
import time

import torch

from paperworks_shared.bench import BenchContext, new_figure

from . import theory
from .config import QTTConfig
from .eval import evaluate
from .eval.loaders import _normalise
from .flops import thinking_equivalent
from .sandbox import sandbox_dataset, sandbox_model

METHODS = ("in_context", "qttt", "thinking", "self_consistency")


def _ds(task, sizes, per, seed):
    import datasets

    raw = sandbox_dataset(task, sizes, per, seed=seed)
    return datasets.Dataset.from_list([_normalise(r, "sandbox", i) for i, r in enumerate(raw)])


def _by(rows, key):
    out = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


def run(ctx: BenchContext) -> None:
    torch.set_num_threads(1)
    t_start = time.time()
    model, tok, train_metrics = sandbox_model(ctx.scale, progress=False)
    sizes = ctx.pick(smoke=[8, 32], cpu=[8, 32, 96, 192], gpu=[8, 32, 96, 192, 384])
    per = ctx.pick(smoke=4, cpu=16, gpu=64)
    steps, span = ctx.pick(smoke=(2, 16), cpu=(4, 16), gpu=(16, 32))
    budget = thinking_equivalent(steps, span)

    # --- E3(iii): pick the qTTT learning rate on held-out contexts (data seed differs from the test) ---
    lrs = ctx.pick(smoke=[1e-3], cpu=[1e-3, 3e-3, 1e-2, 3e-2], gpu=[1e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    held = _ds("kv", [sizes[-2]], ctx.pick(smoke=2, cpu=8, gpu=32), seed=999)
    sweep = []
    for lr in lrs:
        cfg = QTTConfig(steps=steps, span_len=span, lr=lr, weight_decay=0.01, grad_clip=1.0)
        res = evaluate(model, tok, held, "sandbox", ["qttt"], budget, cfg, progress=False, measure_mass=False)
        sweep.append(dict(lr=lr, accuracy=sum(r.correct for r in res) / len(res)))
    base = evaluate(
        model, tok, held, "sandbox", ["in_context"], budget, None, progress=False, measure_mass=False
    )
    base_acc = sum(r.correct for r in base) / len(base)
    best = max(sweep, key=lambda r: (r["accuracy"], -r["lr"]))
    fig, ax = new_figure(1, 1)
    ax[0][0].semilogx([r["lr"] for r in sweep], [r["accuracy"] for r in sweep], "o-", label="qTTT")
    ax[0][0].axhline(base_acc, color="gray", ls="--", label="in-context")
    ax[0][0].set(xlabel="qTTT learning rate", ylabel="held-out accuracy", title=f"kv, {sizes[-2]} records")
    ax[0][0].legend()
    ctx.record(
        "lr_sweep",
        rows=sweep + [dict(lr="in-context", accuracy=base_acc)],
        params=dict(steps=steps, span=span, n=len(held), records=sizes[-2], optimizer="adamw", mode="full"),
        metrics=dict(best_lr=best["lr"]),
        claim="Table 1: accuracy is insensitive within ~1 decade of the best lr and collapses at the extremes.",
        verdict=f"best held-out lr {best['lr']:g} (acc {best['accuracy']:.2f} vs in-context {base_acc:.2f}); "
        + "accuracies across lrs: "
        + ", ".join("{:g}:{:.2f}".format(r["lr"], r["accuracy"]) for r in sweep)
        + ".",
        figure=fig,
    )
    cfg = QTTConfig(steps=steps, span_len=span, lr=best["lr"])

    # --- E1 + E2: dilution and the compute-matched comparison on the same contexts --------------------
    rows = []
    for task in ctx.pick(smoke=["kv"], cpu=["kv"], gpu=["kv", "txlog", "multihop"]):
        ds = _ds(task, sizes, per, seed=123)
        res = evaluate(model, tok, ds, "sandbox", METHODS, budget, cfg, sc_samples=4, progress=False)
        n_of = {r["id"]: r["n_pairs"] for r in ds}
        for m, rs in _by([dict(r.__dict__, n=n_of[r.id]) for r in res], "method").items():
            for n, g in sorted(_by(rs, "n").items()):
                masses = [x["needle_mass"] for x in g if not math.isnan(x["needle_mass"])]
                rows.append(
                    dict(
                        task=task,
                        records=n,
                        tokens=round(sum(x["length"] for x in g) / len(g)),
                        method=m,
                        accuracy=sum(x["correct"] for x in g) / len(g),
                        needle_mass=sum(masses) / len(masses) if masses else float("nan"),
                        n=len(g),
                    )
                )
    ic = [r for r in rows if r["method"] == "in_context" and r["task"] == "kv"]
    acc_fall = ic[0]["accuracy"] - ic[-1]["accuracy"]
    mass_ratio = ic[-1]["needle_mass"] / ic[0]["needle_mass"]
    fig, ax = new_figure(2, 1)
    ax[0][0].plot([r["tokens"] for r in ic], [r["accuracy"] for r in ic], "o-", label="accuracy")
    ax[0][0].set(xscale="log", xlabel="context tokens", ylabel="in-context accuracy", title="kv: accuracy")
    ax[0][1].plot([r["tokens"] for r in ic], [r["needle_mass"] for r in ic], "o-", label="needle mass")
    ax[0][1].plot(
        [r["tokens"] for r in ic],
        [ic[0]["needle_mass"] * ic[0]["tokens"] / r["tokens"] for r in ic],
        "--",
        color="gray",
        label="∝ 1/T from the first point",
    )
    ax[0][1].set(
        xscale="log",
        yscale="log",
        xlabel="context tokens",
        ylabel="needle attention mass",
        title="kv: mass on the needle record",
    )
    ax[0][1].legend()
    ctx.record(
        "dilution",
        rows=ic,
        columns=["task", "records", "tokens", "accuracy", "needle_mass", "n"],
        metrics=dict(
            accuracy_drop=acc_fall,
            mass_ratio_long_over_short=mass_ratio,
            sandbox_model=train_metrics.get("parameters"),
            train_loss=train_metrics.get("train_loss_last"),
        ),
        claim="§2 / App. E: as the context grows, attention mass on the needle decays (~1/T for fixed margins, "
        "Lemma 2.2) and in-context accuracy falls.",
        verdict=f"in-context accuracy {ic[0]['accuracy']:.2f} -> {ic[-1]['accuracy']:.2f} and needle mass "
        f"{ic[0]['needle_mass']:.3f} -> {ic[-1]['needle_mass']:.3f} (x{mass_ratio:.2f}) from {ic[0]['tokens']} "
        f"to {ic[-1]['tokens']} tokens; {'both fall' if acc_fall > 0 and mass_ratio < 1 else 'not both falling'}.",
        figure=fig,
    )

    fig, ax = new_figure(2, 1)
    kv = [r for r in rows if r["task"] == "kv"]
    for m, g in _by(kv, "method").items():
        ax[0][0].plot([r["tokens"] for r in g], [r["accuracy"] for r in g], "o-", label=m)
        ax[0][1].plot([r["tokens"] for r in g], [r["needle_mass"] for r in g], "o-", label=m)
    ax[0][0].set(
        xscale="log", xlabel="context tokens", ylabel="accuracy", title=f"kv, budget {budget} tokens"
    )
    ax[0][1].set(xscale="log", xlabel="context tokens", ylabel="needle mass (answer step)")
    ax[0][0].legend(fontsize=7)
    gains = []
    for task, g in _by(rows, "task").items():
        for n, gg in _by(g, "records").items():
            acc = {r["method"]: r["accuracy"] for r in gg}
            gains.append(
                dict(
                    task=task,
                    records=n,
                    qttt_minus_ic=acc["qttt"] - acc["in_context"],
                    qttt_minus_thinking=acc["qttt"] - acc["thinking"],
                    qttt_minus_sc=acc["qttt"] - acc["self_consistency"],
                )
            )
    kvg = [g for g in gains if g["task"] == "kv"]
    grows = kvg[-1]["qttt_minus_thinking"] > kvg[0]["qttt_minus_thinking"]
    ctx.record(
        "compute_matched",
        rows=rows,
        columns=["task", "records", "tokens", "method", "accuracy", "needle_mass", "n"],
        metrics=dict(
            budget_tokens=budget,
            qttt_steps=steps,
            span=span,
            lr=best["lr"],
            mean_gain_vs_ic=sum(g["qttt_minus_ic"] for g in gains) / len(gains),
            mean_gain_vs_thinking=sum(g["qttt_minus_thinking"] for g in gains) / len(gains),
            gains=gains,
        ),
        params=dict(sc_samples=4, per_length=per, mode="full W_Q fp32 delta", optimizer="adamw"),
        claim="Tables 2-5 / App. G: at a matched FLOP budget qTTT beats thinking and self-consistency on long "
        "contexts, its advantage grows with length, and at short context it can lose (App. E 512-token row).",
        verdict="kv qTTT − thinking accuracy by length: "
        + ", ".join(f"{g['records']}:{g['qttt_minus_thinking']:+.2f}" for g in kvg)
        + f" ({'grows' if grows else 'does not grow'} from shortest to longest); qTTT − in-context: "
        + ", ".join(f"{g['records']}:{g['qttt_minus_ic']:+.2f}" for g in kvg)
        + f". Tiny from-scratch model, {per} contexts per point: differences of one or two items are noise.",
        figure=fig,
    )

    # --- theory ------------------------------------------------------------------------------------
    trow = []
    for T in ctx.pick(smoke=[16, 256], cpu=[16, 128, 1024, 8192], gpu=[16, 128, 1024, 8192]):
        r = theory.dilution_experiment(T, delta=1.0)
        g = torch.Generator().manual_seed(T)
        K = torch.randn(T, 16, generator=g, dtype=torch.float64)
        q = torch.randn(16, generator=g, dtype=torch.float64)
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
