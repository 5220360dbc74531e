"""Benchmark (`make bench`): AUC vs budget, methods (incl. ChipNet), scopes, masked vs slim cost, TP peer.

Every accuracy experiment runs over ``seeds`` (1 at smoke, 2 at cpu) and reports mean ± std over
seeds. Dense trackers are cached (`paperworks_shared.cache`), so a re-run does not retrain them.
"""

from __future__ import annotations

import copy
import time

from paperworks_shared.bench import BenchContext, new_figure

from .bench_util import aggregate, dense_tracker, example_inputs, kept_fraction, prune_eval, search
from .cost import count_flops, count_params, latency_ms
from .data import make_sequence
from .peer import tp_prune_to_params
from .pruner import Pruner
from .slim import slim, slim_param_count
from .train import evaluate, make_pool, train

CLAIM = (
    "Trackers can be pruned to small budgets (down to 1% of prunable units) and stay usable after "
    "fine-tuning; CNN, Transformer and hybrid trackers differ in stability across budgets "
    "(direction unverified in the notes); learned masks beat magnitude/random before fine-tuning; "
    "layerwise thresholds are needed at 1%; only physically slimmed models get faster."
)
METHOD = {"cnn": "netslim", "vit": "vitslim", "hybrid": "netslim"}


def _config(ctx: BenchContext) -> dict:
    return dict(
        batch=ctx.pick(smoke=8, cpu=16),
        dense=ctx.pick(smoke=15, cpu=150),
        search=ctx.pick(smoke=5, cpu=50),
        ft=ctx.pick(smoke=3, cpu=30),
        pool=ctx.pick(smoke=10, cpu=60),
        n_test=ctx.pick(smoke=3, cpu=12),
        test_len=ctx.pick(smoke=10, cpu=25),
        chip_gate_lr=0.2,
        seeds=ctx.pick(smoke=[0], cpu=[0, 1]),
    )


def run(ctx: BenchContext) -> None:
    import torch

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    cfg = _config(ctx)
    seeds = cfg["seeds"]
    archs = ["cnn", "vit", "hybrid"]
    budgets = ctx.pick(smoke=[1.0, 0.25, 0.01], cpu=[1.0, 0.25, 0.1, 0.01])
    b2 = ctx.pick(smoke=0.25, cpu=0.1)  # methods budget
    pool = make_pool(cfg["pool"])
    test = [make_sequence(10**6 + k, cfg["test_len"]) for k in range(cfg["n_test"])]
    dense, searched, cache_hits = {}, {}, 0
    for seed in seeds:
        for arch in archs:
            dense[arch, seed], hit = dense_tracker(arch, seed, cfg, pool)
            cache_hits += int(hit)
            searched[arch, seed], _ = search(dense[arch, seed], METHOD[arch], seed, cfg, pool)
    t_dense = time.perf_counter() - t_start

    # E1: AUC vs budget, before / after fine-tune (the paper's stability comparison)
    raw, runs = [], {}
    for seed in seeds:
        for arch in archs:
            for b in budgets:
                scope = "layerwise" if b <= 0.01 else "global"
                m, before, after = prune_eval(
                    searched[arch, seed], METHOD[arch], b, scope, cfg, pool, test, seed
                )
                s = slim(m)
                row = {
                    "arch": arch,
                    "budget": b,
                    "scope": scope,
                    "seed": seed,
                    "auc_before_ft": before,
                    "auc_after_ft": after["auc"],
                    "precision5px": after["precision"],
                    "params": count_params(s),
                    "mflops": count_flops(s, example_inputs()) / 1e6,
                    "kept": kept_fraction(m),
                }
                runs[arch, b, scope, seed] = row
                raw.append(row)
    rows = aggregate(
        raw,
        ["arch", "budget", "scope"],
        ["auc_before_ft", "auc_after_ft", "precision5px", "params", "mflops"],
    )
    dense_auc = {}
    for arch in archs:
        v = [evaluate(dense[arch, s], test)["auc"] for s in seeds]
        dense_auc[arch] = sum(v) / len(v)
    fig, ax = new_figure(1, 1)
    for arch in archs:
        r = [x for x in rows if x["arch"] == arch]
        bs = [x["budget"] for x in r]
        line = ax[0][0].errorbar(
            bs,
            [x["auc_after_ft"] for x in r],
            [x["auc_after_ft_sd"] for x in r],
            fmt="o-",
            label=f"{arch} after FT",
        )
        ax[0][0].errorbar(
            bs,
            [x["auc_before_ft"] for x in r],
            [x["auc_before_ft_sd"] for x in r],
            fmt="x--",
            color=line[0].get_color(),
            label=f"{arch} before FT",
        )
    ax[0][0].set(
        xscale="log", xlabel="budget (fraction of prunable units)", ylabel="success AUC (mean ± std)"
    )
    ax[0][0].legend(fontsize=7)
    drops = {a: dense_auc[a] - min(x["auc_after_ft"] for x in rows if x["arch"] == a) for a in archs}
    stable = min(drops, key=drops.get)
    low = min(budgets)
    lows = {a: [x for x in rows if x["arch"] == a and x["budget"] == low][0] for a in archs}
    verdict = (
        "; ".join(
            f"{a}: dense AUC {dense_auc[a]:.3f}, at budget {low} AUC {lows[a]['auc_after_ft']:.3f}"
            f" ± {lows[a]['auc_after_ft_sd']:.3f} after FT (before FT {lows[a]['auc_before_ft']:.3f})"
            for a in archs
        )
        + f". Smallest worst-case drop after fine-tuning: {stable} ({drops[stable]:.3f}). "
        f"Tiny synthetic setup, {len(seeds)} seed(s), mean ± std."
    )
    cols = ["arch", "budget", "scope", "seeds", "auc_before_ft ± sd", "auc_after_ft ± sd", "precision5px"]
    ctx.record(
        "auc_vs_budget",
        rows=rows,
        columns=cols + ["params", "mflops"],
        metrics={
            "dense_auc": dense_auc,
            "worst_drop": drops,
            "dense_cache_hits": cache_hits,
        },
        params=cfg,
        claim=CLAIM,
        verdict=verdict,
        figure=fig,
    )

    # E2: learned gates (ViT-Slim / NetSlim, and ChipNet) vs L1 vs random at equal budget
    raw2 = []
    for seed in seeds:
        for arch in archs:
            learned = runs.get((arch, b2, "global", seed))
            if learned is None:
                m, before, after = prune_eval(
                    searched[arch, seed], METHOD[arch], b2, "global", cfg, pool, test, seed
                )
                learned = {"auc_before_ft": before, "auc_after_ft": after["auc"], "kept": kept_fraction(m)}
            raw2.append(
                {"arch": arch, "method": METHOD[arch], "seed": seed, "kept": learned["kept"], **_auc(learned)}
            )
            _, chip = search(dense[arch, seed], "chipnet", seed, cfg, pool, budget=b2)
            m, before, after = prune_eval(None, "chipnet", b2, "global", cfg, pool, test, seed, pruner=chip)
            raw2.append(
                {
                    "arch": arch,
                    "method": "chipnet",
                    "seed": seed,
                    "kept": kept_fraction(m),
                    "auc_before_ft": before,
                    "auc_after_ft": after["auc"],
                }
            )
            for method in ("l1", "random"):
                m, before, after = prune_eval(dense[arch, seed], method, b2, "global", cfg, pool, test, seed)
                raw2.append(
                    {
                        "arch": arch,
                        "method": method,
                        "seed": seed,
                        "kept": kept_fraction(m),
                        "auc_before_ft": before,
                        "auc_after_ft": after["auc"],
                    }
                )
    rows2 = aggregate(raw2, ["arch", "method"], ["kept", "auc_before_ft", "auc_after_ft"])
    parts = []
    for arch in archs:
        r = {x["method"]: x for x in rows2 if x["arch"] == arch}
        order = sorted(r, key=lambda k: -r[k]["auc_before_ft"])
        order_ft = sorted(r, key=lambda k: -r[k]["auc_after_ft"])
        parts.append(f"{arch}: before FT {' > '.join(order)}; after FT {' > '.join(order_ft)}")
    ctx.record(
        "methods",
        rows=rows2,
        columns=["arch", "method", "seeds", "kept", "auc_before_ft ± sd", "auc_after_ft ± sd"],
        params={**cfg, "budget": b2},
        claim="learned gates >= L1 > random at equal budget",
        verdict="; ".join(parts)
        + f" (budget {b2}, mean over {len(seeds)} seed(s)). Learned methods also had "
        f"{cfg['search']} extra search steps (unequal training budget).",
    )

    # E3: global vs layerwise thresholds at extreme budgets (ViT)
    raw3 = []
    for seed in seeds:
        for b in ctx.pick(smoke=[0.05], cpu=[0.05, 0.01]):
            for scope, mk in (("global", 0), ("layerwise", 1)):
                m, before, after = prune_eval(
                    searched["vit", seed], "vitslim", b, scope, cfg, pool, test, seed, mk
                )
                empty = sum(int(not bool(u.mask.any())) for u in Pruner(m, "l1").units.values())
                raw3.append(
                    {
                        "budget": b,
                        "scope": scope,
                        "seed": seed,
                        "empty_units": empty,
                        "auc_before_ft": before,
                        "auc_after_ft": after["auc"],
                    }
                )
    rows3 = aggregate(raw3, ["budget", "scope"], ["empty_units", "auc_before_ft", "auc_after_ft"])
    better = sum(
        1 for i in range(0, len(rows3), 2) if rows3[i + 1]["auc_after_ft"] >= rows3[i]["auc_after_ft"]
    )
    ctx.record(
        "scope",
        rows=rows3,
        columns=["budget", "scope", "seeds", "empty_units", "auc_before_ft ± sd", "auc_after_ft ± sd"],
        params=cfg,
        claim="layerwise thresholds are needed at 1% (global empties layers)",
        verdict=f"layerwise >= global after FT (mean over seeds) at {better}/{len(rows3) // 2} budgets; "
        f"global emptied {[r['empty_units'] for r in rows3 if r['scope'] == 'global']} units on average.",
    )

    # E4: masked vs slimmed params / FLOPs / latency (seed 0; deterministic apart from timing noise)
    rows4 = []
    n_lat = ctx.pick(smoke=3, cpu=20)
    for arch in archs:
        for b in ctx.pick(smoke=[1.0, 0.25], cpu=[1.0, 0.5, 0.25, 0.1]):
            m = copy.deepcopy(searched[arch, seeds[0]])
            p = Pruner(m, METHOD[arch])
            p.apply(p.masks(b), fold_scales=True)
            s = slim(m)
            x = example_inputs()
            rows4.append(
                {
                    "arch": arch,
                    "budget": b,
                    "masked_params": count_params(m),
                    "slim_params": count_params(s),
                    "formula_params": slim_param_count(m),
                    "masked_mflops": count_flops(m, x) / 1e6,
                    "slim_mflops": count_flops(s, x) / 1e6,
                    "masked_ms": latency_ms(m, x, runs=n_lat),
                    "slim_ms": latency_ms(s, x, runs=n_lat),
                }
            )
    for arch in ("cnn", "vit"):  # opt-in grouped residual pruning: the stream shrinks too
        for b in ctx.pick(smoke=[0.25], cpu=[0.5, 0.25]):
            m = copy.deepcopy(searched[arch, seeds[0]])
            p = Pruner(m, METHOD[arch], group_residual=True)
            p.apply(p.masks(b), fold_scales=True)
            s = slim(m)
            x = example_inputs()
            rows4.append(
                {
                    "arch": f"{arch} +grouped residual",
                    "budget": b,
                    "masked_params": count_params(m),
                    "slim_params": count_params(s),
                    "formula_params": "n/a",
                    "masked_mflops": count_flops(m, x) / 1e6,
                    "slim_mflops": count_flops(s, x) / 1e6,
                    "masked_ms": latency_ms(m, x, runs=n_lat),
                    "slim_ms": latency_ms(s, x, runs=n_lat),
                }
            )
    fig4, ax4 = new_figure(2, 1)
    for arch in archs:
        r = [x for x in rows4 if x["arch"] == arch]
        bs = [x["budget"] for x in r]
        ax4[0][0].plot(bs, [x["slim_mflops"] for x in r], "o-", label=f"{arch} slim")
        ax4[0][0].plot(bs, [x["masked_mflops"] for x in r], "x--", label=f"{arch} masked")
        ax4[0][1].plot(bs, [x["slim_ms"] for x in r], "o-", label=f"{arch} slim")
        ax4[0][1].plot(bs, [x["masked_ms"] for x in r], "x--", label=f"{arch} masked")
    ax4[0][0].set(xlabel="budget", ylabel="MFLOPs (FlopCounterMode)")
    ax4[0][1].set(xlabel="budget", ylabel="CPU latency ms (batch 1, 1 thread)")
    ax4[0][0].legend(fontsize=7)
    b4 = ctx.pick(smoke=0.25, cpu=0.25)
    speed = {a: [x for x in rows4 if x["arch"] == a and x["budget"] == b4][0] for a in archs}
    flops_mono = all(
        all(u["slim_mflops"] > v["slim_mflops"] for u, v in zip(r, r[1:]))
        for r in ([x for x in rows4 if x["arch"] == a] for a in archs)
    )
    formula_ok = all(r["slim_params"] == r["formula_params"] for r in rows4 if r["formula_params"] != "n/a")
    grouped = [r for r in rows4 if "grouped" in r["arch"] and r["budget"] == b4]
    verdict4 = (
        "; ".join(
            f"{a} at {b4}: slim {v['slim_mflops']:.2f} vs masked {v['masked_mflops']:.2f} MFLOPs, "
            f"{v['slim_params']} vs {v['masked_params']} params, latency {v['masked_ms'] / v['slim_ms']:.2f}x"
            for a, v in speed.items()
        )
        + "; with grouped residual pruning: "
        + ", ".join(f"{r['arch']} {r['slim_params']} params / {r['slim_mflops']:.2f} MFLOPs" for r in grouped)
        + f". Slim FLOPs strictly fall with the budget: {flops_mono}; slim params == formula: {formula_ok}. "
        "Latency measured on a shared 2-core machine: noisy."
    )
    ctx.record(
        "cost",
        rows=rows4,
        metrics={"slim_flops_monotone": flops_mono, "formula_matches": formula_ok},
        params={"runs": n_lat},
        claim="only physically slimmed models get smaller and faster",
        verdict=verdict4,
        figure=fig4,
    )

    # E5: Torch-Pruning peer at equal realised params (CNN and ViT; same internal-only scope)
    raw5 = []
    for seed in seeds:
        for arch in ("cnn", "vit"):
            for b in ctx.pick(smoke=[0.25], cpu=[0.25, 0.1]):
                ours = runs[arch, b, "global", seed]
                peer = tp_prune_to_params(dense[arch, seed], ours["params"], example_inputs())
                tp_before = evaluate(peer, test)["auc"]
                train(peer, cfg["search"] + cfg["ft"], pool, batch=cfg["batch"], lr=1e-3, seed=seed + 1)
                base = {"arch": arch, "budget": b, "seed": seed}
                raw5.append(
                    {
                        **base,
                        "method": f"ours ({METHOD[arch]}, search+FT)",
                        "params": ours["params"],
                        **_auc(ours),
                    }
                )
                raw5.append(
                    {
                        **base,
                        "method": "torch-pruning L1 (FT only)",
                        "params": count_params(peer),
                        "auc_before_ft": tp_before,
                        "auc_after_ft": evaluate(peer, test)["auc"],
                    }
                )
    rows5 = aggregate(raw5, ["arch", "budget", "method"], ["params", "auc_before_ft", "auc_after_ft"])
    wins = sum(1 for i in range(0, len(rows5), 2) if rows5[i]["auc_after_ft"] >= rows5[i + 1]["auc_after_ft"])
    ctx.record(
        "torch_pruning_peer",
        rows=rows5,
        columns=["arch", "budget", "method", "seeds", "params", "auc_before_ft ± sd", "auc_after_ft ± sd"],
        params={**cfg, "tp_steps": cfg["search"] + cfg["ft"]},
        claim="peer comparison at equal realised params (not a paper claim)",
        verdict=f"ours >= Torch-Pruning after equal total training steps at {wins}/{len(rows5) // 2} "
        f"(arch, budget) settings (mean over {len(seeds)} seed(s)).",
    )
    ctx.record(
        "timing",
        rows=[
            {
                "dense_cache_hits": cache_hits,
                "dense_and_search_s": round(t_dense, 1),
                "total_s": round(time.perf_counter() - t_start, 1),
            }
        ],
        params={"scale": ctx.scale},
        claim="(bookkeeping) wall time of this benchmark",
        verdict=f"total {time.perf_counter() - t_start:.0f} s with {cache_hits} cached dense trackers "
        "on a shared 2-core machine.",
    )


def _auc(r: dict) -> dict:
    return {"auc_before_ft": r["auc_before_ft"], "auc_after_ft": r["auc_after_ft"]}
