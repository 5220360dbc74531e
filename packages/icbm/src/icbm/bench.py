"""`make bench` for icbm: the notes' synthetic experiments E1 (policies), E2 (groups), E4b (costs)
and the per-decision cost of the scoring [notes 3.2-3.3, 5]. Verdicts are computed from the numbers.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .candidates import build_candidates, candidate_label_logits
from .data.synthetic import OccludedConceptsTask, categorical_task
from .evaluate import evaluate_interventions
from .experiments import POLICY_ORDER, run_policies, standard_policies, train_synthetic
from .groups import ConceptGroups
from .model import ConceptBottleneckModel
from .policies import CooP, Influence, Random
from .state import InteractionState
from .training import predict_concept_logits

CLAIM_E1 = (
    "CooP (concept uncertainty + beta x expected change of the predicted-class probability - gamma x cost) "
    "beats random, the static order (Koh et al.) and uncertainty-only at small budgets; the paper reports "
    "5-10% accuracy gains with 5 interactions on CUB / CheXpert / OAI. Notes' prototype (synthetic, k=3): "
    "+0.18 vs random, +0.09 vs static, +0.12 vs uncertainty."
)


def _e1(ctx, seeds, sizes, epochs, budget):
    from paperworks_shared.bench import new_figure

    per_seed, betas, timing = [], [], {}
    for s in seeds:
        task = OccludedConceptsTask(seed=s)
        model, _tr, va, te = train_synthetic(task, sizes, split_seed=s, epochs=epochs)
        pols, tuned = standard_policies(model, va, budget)
        res = run_policies(model, te, pols, budget)
        per_seed.append({n: r["accuracy"] for n, r in res.items()})
        betas.append(tuned.best["beta"])
        for n, r in res.items():
            timing.setdefault(n, []).append(r["us_per_decision"])
    acc = {n: np.stack([d[n] for d in per_seed]) for n in POLICY_ORDER}  # (seeds, T+1)
    rows = []
    for n in POLICY_ORDER:
        row = {"policy": n}
        for k in range(budget + 1):
            row[f"k={k}"] = float(acc[n][:, k].mean())
        row["us/decision"] = float(np.mean(timing[n]))
        rows.append(row)
    metrics, lines, wins = {}, [], []
    for k in (1, 3, 5):
        if k > budget:
            continue
        for base in ("random", "static-greedy", "uncertainty", "influence"):
            d = acc["coop"][:, k] - acc[base][:, k]
            metrics[f"coop_minus_{base}_k{k}_mean"] = float(d.mean())
            metrics[f"coop_minus_{base}_k{k}_min"] = float(d.min())
            if base != "influence":
                wins.append(d.min() > 0)
            if k == 3:
                lines.append(f"{base} {d.mean():+.3f} (min {d.min():+.3f})")
    metrics["oracle_minus_coop_k3_mean"] = float((acc["oracle"][:, 3] - acc["coop"][:, 3]).mean())
    metrics["tuned_betas"] = betas
    verdict = (
        f"Over {len(seeds)} seeds (N_test={sizes[2]}), at k=3 CooP minus: "
        + ", ".join(lines)
        + ". "
        + (
            "CooP beats random, static and uncertainty-only at k=1, 3 and 5 on every seed: the claim holds "
            "on this synthetic task."
            if all(wins)
            else "CooP does NOT beat every baseline on every seed at k=1/3/5 (see the metrics)."
        )
        + f" Influence-only is within {abs(metrics['coop_minus_influence_k3_mean']):.3f} of CooP (expected: the "
        "expectation weights already encode uncertainty). The greedy oracle (reads the label) stays "
        f"{metrics['oracle_minus_coop_k3_mean']:+.3f} above. Synthetic data only: CUB/CheXpert/OAI were not available."
    )
    fig, ax = new_figure(1, 1, size=(6.0, 4.0))
    for n in POLICY_ORDER:
        m, sd = acc[n].mean(0), acc[n].std(0)
        ax[0][0].plot(range(budget + 1), m, marker="o", ms=3, label=n, lw=2.2 if n == "coop" else 1.2)
        ax[0][0].fill_between(range(budget + 1), m - sd, m + sd, alpha=0.12)
    ax[0][0].set_xlabel("interactions k (concept groups asked)")
    ax[0][0].set_ylabel("test accuracy")
    ax[0][0].set_title(f"E1 occluded concepts, mean +- sd over {len(seeds)} seeds")
    ax[0][0].legend(fontsize=7)
    ctx.record(
        "policy_curves",
        rows=rows,
        metrics=metrics,
        claim=CLAIM_E1,
        verdict=verdict,
        params={
            "seeds": list(seeds),
            "sizes": list(sizes),
            "epochs": epochs,
            "budget": budget,
            "coop": "entropy + beta*confidence_change(E|d|), beta tuned on val in {0.1,1,10,100}",
            "random": "mean over 5 policy seeds (never the max)",
        },
        figure=fig,
    )


def _e2(ctx, seeds, sizes, epochs, budget=4):
    from paperworks_shared.bench import new_figure

    conv = {
        "v1": CooP(beta=100, influence=Influence(group_mode="v1")),
        "v2": CooP(beta=100, influence=Influence(group_mode="v2")),
        "categorical": CooP(beta=100, influence=Influence(group_mode="categorical")),
    }
    acc = {n: [] for n in (*conv, "random")}
    for s in seeds:
        task = categorical_task(seed=s)
        model, _tr, _va, te = train_synthetic(task, sizes, split_seed=s, epochs=epochs)
        logits = predict_concept_logits(model, te)
        for n, p in conv.items():
            acc[n].append(evaluate_interventions(model, te, p, budget, concept_logits=logits).accuracy)
        acc["random"].append(
            np.mean(
                [
                    evaluate_interventions(model, te, Random(seed=r), budget, concept_logits=logits).accuracy
                    for r in range(5)
                ],
                axis=0,
            )
        )
    acc = {n: np.stack(v) for n, v in acc.items()}
    rows = [
        {"convention": n, **{f"k={k}": float(a[:, k].mean()) for k in range(budget + 1)}}
        for n, a in acc.items()
    ]
    d = acc["categorical"][:, 2] - acc["v1"][:, 2]
    d2 = acc["v2"][:, 2] - acc["v1"][:, 2]
    holds = d.min() > 0 and (acc["v1"][:, 2] - acc["random"][:, 2]).min() > 0
    verdict = (
        f"8 one-hot groups x 4 values, {len(seeds)} seeds: at k=2 categorical - v1 = {d.mean():+.3f} "
        f"(min {d.min():+.3f}), v2 - v1 = {d2.mean():+.3f}; "
        + ("cat/v2 >> v1 > random as the notes predicted." if holds else "the notes' ordering does NOT hold.")
    )
    fig, ax = new_figure(1, 1)
    for n, a in acc.items():
        ax[0][0].plot(range(budget + 1), a.mean(0), marker="o", label=n)
    ax[0][0].set_xlabel("interactions k")
    ax[0][0].set_ylabel("test accuracy")
    ax[0][0].set_title("E2 categorical groups: group-influence conventions")
    ax[0][0].legend(fontsize=8)
    ctx.record(
        "grouped_concepts",
        rows=rows,
        metrics={
            "cat_minus_v1_k2_mean": float(d.mean()),
            "cat_minus_v1_k2_min": float(d.min()),
            "v2_minus_v1_k2_mean": float(d2.mean()),
        },
        claim="Notes E2: on one-hot groups the official v1 convention (mean prob, all-0/all-1) is far worse "
        "than per-member (v2) or categorical enumeration (prototype: about +0.10 at k=2).",
        verdict=verdict,
        params={"seeds": list(seeds), "sizes": list(sizes), "beta": 100},
        figure=fig,
    )


def _e4(ctx, seed, sizes, epochs, budget=10):
    from paperworks_shared.bench import new_figure

    rng = np.random.default_rng(seed)
    costs = rng.integers(1, 7, size=16).astype(float).tolist()  # U{1..6} as the official CUB/OAI costs
    task = OccludedConceptsTask(seed=seed, costs=costs)
    model, _tr, _va, te = train_synthetic(task, sizes, split_seed=seed, epochs=epochs)
    logits = predict_concept_logits(model, te)
    grid = np.arange(0, 31, 2.0)
    rows, fig_data = [], {}
    for g in (0.0, 2.0, 5.0, 20.0):
        curve = evaluate_interventions(model, te, CooP(beta=100, gamma=g), budget, concept_logits=logits)
        a = curve.accuracy_at_cost(grid)
        fig_data[f"coop gamma={g:g}"] = a
        rows.append(
            {
                "policy": f"coop gamma={g:g}",
                **{f"cost<={int(b)}": float(v) for b, v in zip(grid[::3], a[::3])},
            }
        )
    rnd = np.mean(
        [
            evaluate_interventions(model, te, Random(seed=r), budget, concept_logits=logits).accuracy_at_cost(
                grid
            )
            for r in range(5)
        ],
        axis=0,
    )
    fig_data["random"] = rnd
    rows.append({"policy": "random", **{f"cost<={int(b)}": float(v) for b, v in zip(grid[::3], rnd[::3])}})
    best_at_8 = {n: float(a[list(grid).index(8.0)]) for n, a in fig_data.items()}
    # area under accuracy-vs-cost over the whole grid, per gamma
    area = {n: float(np.mean(a)) for n, a in fig_data.items()}
    g0 = "coop gamma=0"
    best = max((n for n in fig_data if n.startswith("coop")), key=lambda n: area[n])
    gain = area[best] - area[g0]
    if best == g0:
        cost_word = "gamma=0 is best: the cost term does not help at equal cost (as in the notes' prototype)."
    elif gain > 0.01:
        cost_word = (
            f"the best cost weight ({best}) gains {gain:+.3f}: a real but small benefit of the cost term."
        )
    else:
        cost_word = f"the best cost weight ({best}) gains only {gain:+.3f}: within noise, no clear benefit at equal cost."
    above = all(
        (fig_data[n] >= fig_data["random"] - 1e-9).all()
        for n in fig_data
        if n.startswith("coop") and "=20" not in n
    )
    verdict = (
        "Accuracy at cumulative cost <= 8: "
        + ", ".join(f"{n} {v:.3f}" for n, v in best_at_8.items())
        + ". Mean accuracy over cost budgets 0..30: "
        + ", ".join(f"{n} {v:.3f}" for n, v in area.items())
        + f". On that mean, {cost_word} "
        + (
            "CooP with gamma <= 5 is at or above random at every budget."
            if above
            else "Some CooP variant with gamma <= 5 falls below random at some budget."
        )
    )
    fig, ax = new_figure(1, 1)
    for n, a in fig_data.items():
        ax[0][0].plot(grid, a, marker=".", label=n)
    ax[0][0].set_xlabel("cost budget (sum of group costs, U{1..6})")
    ax[0][0].set_ylabel("test accuracy")
    ax[0][0].set_title("E4b accuracy vs acquisition cost")
    ax[0][0].legend(fontsize=8)
    ctx.record(
        "cost_aware",
        rows=rows,
        metrics={"acc_at_cost_8": best_at_8, "mean_acc_over_costs": area},
        figure=fig,
        claim="CooP subtracts gamma x cost; the paper shows cost-aware curves. Notes E4b: no gain at equal cost.",
        verdict=verdict,
        params={"costs": costs, "beta": 100, "seed": seed},
    )


def _e3(ctx, seeds, sizes, epochs, k=3):
    """Static vs dynamic: the CooP - static gap should shrink when occlusion is a fixed property of a concept."""
    from paperworks_shared.bench import new_figure

    from .policies import StaticGreedy

    rows, gaps = [], {"instance": [], "fixed": []}
    for occl in ("instance", "fixed"):
        for s in seeds:
            task = OccludedConceptsTask(seed=s, occlusion=occl)
            model, _tr, va, te = train_synthetic(task, sizes, split_seed=s, epochs=epochs)
            logits = predict_concept_logits(model, te)
            coop = evaluate_interventions(model, te, CooP(beta=10), k, concept_logits=logits).accuracy[k]
            static = evaluate_interventions(
                model, te, StaticGreedy.fit(model, va, n_steps=k), k, concept_logits=logits
            ).accuracy[k]
            gaps[occl].append(coop - static)
            rows.append(
                {
                    "occlusion": occl,
                    "seed": s,
                    f"coop k={k}": float(coop),
                    f"static k={k}": float(static),
                    "coop - static": float(coop - static),
                }
            )
    gi, gf = float(np.mean(gaps["instance"])), float(np.mean(gaps["fixed"]))
    verdict = (
        f"CooP - static at k={k}: instance-specific occlusion {gi:+.3f}, fixed occlusion {gf:+.3f} "
        f"(mean over {len(seeds)} seeds). "
        + (
            "The gap shrinks when a static order can learn what to ask, as the notes predicted"
            if gf < gi
            else "The gap does NOT shrink under fixed occlusion"
        )
        + ("; CooP stays >= static." if min(gaps["fixed"]) >= -0.005 else "; static beats CooP on some seed.")
    )
    fig, ax = new_figure(1, 1)
    ax[0][0].bar(["instance", "fixed"], [gi, gf], color=["tab:blue", "tab:orange"])
    ax[0][0].set_ylabel(f"accuracy(CooP) - accuracy(static) at k={k}")
    ax[0][0].set_title("E3 static vs dynamic by occlusion type")
    ctx.record(
        "static_vs_dynamic",
        rows=rows,
        metrics={"gap_instance": gi, "gap_fixed": gf},
        figure=fig,
        claim="Notes E3: the dynamic policy's advantage over a static order comes from instance-specific "
        "uncertainty; with concept-fixed occlusion the gap shrinks (prototype: +0.06..0.10 -> "
        "+0.003..0.053).",
        verdict=verdict,
        params={"seeds": list(seeds), "sizes": list(sizes), "beta": 10},
    )


def _timing(ctx, batch, n_groups, per_group, n_classes, reps):
    """Per-step scoring cost at CUB-like shape: linear low-rank path vs the general head path."""
    torch.manual_seed(0)
    c = n_groups * per_group
    groups = ConceptGroups(
        {f"g{k}": list(range(k * per_group, (k + 1) * per_group)) for k in range(n_groups)}
    )
    model = ConceptBottleneckModel(torch.nn.Identity(), torch.nn.Linear(c, n_classes), groups).eval()
    logits = torch.randn(batch, c) * 2
    state = InteractionState.initial(model, logits)
    rows, ref = [], None
    for mode in ("v1", "v2"):
        cands = build_candidates(groups, mode)
        for use_linear in (True, False):
            with torch.no_grad():
                candidate_label_logits(model, state.bottleneck, cands, use_linear)
                t0 = time.perf_counter()
                for _ in range(reps):
                    out = candidate_label_logits(model, state.bottleneck, cands, use_linear)
                ms = 1000 * (time.perf_counter() - t0) / reps
            if use_linear:
                ref = out
            diff = float((out - ref).abs().max())
            rows.append(
                {
                    "group_mode": mode,
                    "path": "linear low-rank" if use_linear else "general head",
                    "candidates": len(cands.group),
                    "ms_per_step": ms,
                    "us_per_decision": 1000 * ms / batch,
                    "max_abs_diff_vs_linear": diff,
                }
            )
    with torch.no_grad():
        pol = CooP()
        pol.select(state)
        t0 = time.perf_counter()
        for _ in range(reps):
            pol.select(state)
        ms = 1000 * (time.perf_counter() - t0) / reps
    rows.append(
        {
            "group_mode": "auto",
            "path": "CooP.select (end to end)",
            "candidates": "",
            "ms_per_step": ms,
            "us_per_decision": 1000 * ms / batch,
            "max_abs_diff_vs_linear": "",
        }
    )
    agree = all(r["max_abs_diff_vs_linear"] == "" or r["max_abs_diff_vs_linear"] < 1e-4 for r in rows)
    ctx.record(
        "cost_per_decision",
        rows=rows,
        metrics={"paths_agree": agree},
        claim="Notes 5: vectorised scoring; about 57 head evaluations per step for CUB (28 groups, v1); "
        "a low-rank update for linear heads.",
        verdict=(
            f"B={batch}, {n_groups} groups x {per_group} concepts, {n_classes} classes, 1 thread: "
            + "; ".join(f"{r['path']} ({r['group_mode']}) {r['ms_per_step']:.1f} ms/step" for r in rows)
            + (". Both paths agree (< 1e-4)." if agree else ". PATHS DISAGREE.")
            + " Timings are inflated: other jobs shared the 2 cores."
        ),
        params={"batch": batch, "groups": n_groups, "per_group": per_group, "classes": n_classes},
    )


def run(ctx) -> None:
    """Entry point for paperworks-bench."""
    torch.set_num_threads(1)
    seeds = tuple(range(ctx.pick(smoke=2, cpu=5, gpu=5)))
    sizes = ctx.pick(smoke=(1000, 300, 400), cpu=(4000, 1000, 2000), gpu=(4000, 1000, 2000))
    epochs = ctx.pick(smoke=15, cpu=60, gpu=60)
    _e1(ctx, seeds, sizes, epochs, budget=10)
    _e2(ctx, tuple(range(ctx.pick(smoke=1, cpu=3, gpu=5))), sizes, epochs)
    _e4(ctx, 0, sizes, epochs)
    _e3(ctx, tuple(range(ctx.pick(smoke=1, cpu=3, gpu=5))), sizes, epochs)
    _timing(
        ctx,
        batch=ctx.pick(smoke=128, cpu=512, gpu=8192),
        n_groups=28,
        per_group=4,
        n_classes=ctx.pick(smoke=50, cpu=200, gpu=200),
        reps=ctx.pick(smoke=2, cpu=3, gpu=10),
    )
