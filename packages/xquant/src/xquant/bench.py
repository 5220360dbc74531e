"""`make bench` entry point: the paper's equal-memory comparison on tiny Llama models trained on the
shared corpus (MHA and GQA), plus cross-layer similarity, per-layer K/V error, real-decode fidelity,
directional CPU latency and the analytic roofline. Every verdict is computed from the numbers."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from paperworks_shared.bench import BenchContext, new_figure
from paperworks_shared.corpus import corpus_text
from paperworks_shared.repro import seed_everything
from paperworks_shared.train import pretrained_tiny

from .accounting import HARDWARE, breakeven_context
from .evaluation import (
    byte_windows,
    cross_layer_similarity,
    decode_latency,
    greedy_agreement,
    layer_errors,
    measured_ratio,
    paper_ratio,
    perplexity,
)
from .methods import parse_method

MHA_METHODS = ["fp16", "kivi*-4", "kivi*-3", "kivi*-2", "kivi-2", "xquant-8", "xquant-4", "xquant-3", "xquant-2",
               "xquant-cl-4", "xquant-cl-3", "xquant-cl-2", "xquant-cl-open-3", "xquant-cl-open-2"]  # fmt: skip
GQA_METHODS = ["fp16", "kivi*-4", "kivi*-3", "kivi*-2", "xquant-4", "xquant-3", "xquant-2",
               "xquant-cl-3", "xquant-cl-2", "xquant-cl-open-2"]  # fmt: skip
#: CL base layer. The paper uses index 2 of 32 layers at 4 bits (§4.3); our models have 2-4 layers,
#: so the base is layer 0 at 4 bits and no extra early layers (the Table-1-like setting for everyone).
CL_KW = dict(base_layer=0, base_bits=4, early_layers=0)


def _row(model, name, group, windows, fp_ppl, probe):
    cfg = parse_method(name, group_size=group, residual_length=0, **CL_KW)
    ppl = perplexity(model, windows, cfg)
    _, meas = measured_ratio(model, cfg, probe)
    errs = layer_errors(model, probe, cfg)
    return {
        "method": name,
        "mem_ratio_paper": paper_ratio(model, cfg),
        "mem_ratio_measured": meas,
        "ppl": ppl,
        "dppl": ppl - fp_ppl if fp_ppl is not None else 0.0,
        "k_rel_err": sum(e["k_rel_err"] for e in errs) / len(errs) if errs else 0.0,
        "v_rel_err": sum(e["v_rel_err"] for e in errs) / len(errs) if errs else 0.0,
    }, errs


def _get(rows, name):
    return next(r for r in rows if r["method"] == name)


def run(ctx: BenchContext) -> None:
    seed_everything(0)
    torch.set_num_threads(1)
    seq_len = ctx.pick(smoke=128, cpu=256)
    n_win = ctx.pick(smoke=4, cpu=16)
    windows = byte_windows(corpus_text("validation"), seq_len, n_win)
    probe = windows[:2]
    models = {
        "llama-mha": (pretrained_tiny("llama", ctx.scale, progress=False).model, 64, MHA_METHODS),
        "llama-gqa": (pretrained_tiny("llama-gqa", ctx.scale, progress=False).model, 32, GQA_METHODS),
    }
    frontier, per_layer = {}, {}
    for tag, (model, group, methods) in models.items():
        rows, fp = [], None
        for name in tqdm(methods, desc=f"xquant frontier {tag}", leave=False):
            r, errs = _row(model, name, group, windows, fp, probe)
            fp = r["ppl"] if name == "fp16" else fp
            r["model"] = tag
            rows.append(r)
            per_layer[(tag, name)] = errs
        frontier[tag] = rows
    _record_frontier(ctx, frontier, seq_len, n_win)
    _record_layer_errors(ctx, per_layer)
    _record_similarity(ctx, models, probe)
    _record_generation(ctx, models, windows)
    _record_latency(ctx, models["llama-mha"][0])
    _record_roofline(ctx)


def _record_frontier(ctx, frontier, seq_len, n_win):
    mha, gqa = frontier["llama-mha"], frontier["llama-gqa"]
    x4, k2, cl3 = _get(mha, "xquant-4"), _get(mha, "kivi*-2"), _get(mha, "xquant-cl-3")
    verdicts = []
    ok1 = x4["dppl"] < k2["dppl"]
    verdicts.append(
        f"(1) MHA, equal memory: XQuant-4 (mem {x4['mem_ratio_paper']:.3f}) dPPL {x4['dppl']:+.3f} vs KIVI*-2 "
        f"(mem {k2['mem_ratio_paper']:.3f}) dPPL {k2['dppl']:+.3f} -> {'holds' if ok1 else 'does NOT hold'}."
    )
    ok2 = cl3["dppl"] < k2["dppl"]
    verdicts.append(
        f"(2) XQuant-CL-3 stores {1 / cl3['mem_ratio_paper']:.1f}x less than FP16 KV (paper ~10x at group 128; "
        f"our groups of 64 add 0.5 bit) with dPPL {cl3['dppl']:+.3f} vs KIVI*-2 {k2['dppl']:+.3f} -> "
        f"{'smaller degradation, holds' if ok2 else 'NOT smaller, does not hold'}."
    )
    parts = []
    for tag, rows in frontier.items():
        for b in (2, 3):
            try:
                c, o = _get(rows, f"xquant-cl-{b}"), _get(rows, f"xquant-cl-open-{b}")
            except StopIteration:
                continue
            parts.append(f"{tag} {b}-bit closed {c['dppl']:+.3f} vs open {o['dppl']:+.3f}"
                         f" ({'closed better' if c['dppl'] < o['dppl'] else 'open better'})")  # fmt: skip
    verdicts.append("(3) closed vs open loop: " + "; ".join(parts) + ".")
    g = []
    for b in (2, 3, 4):
        xq, kv = _get(gqa, f"xquant-{b}"), _get(gqa, f"kivi*-{b}")
        g.append(f"{b}-bit XQuant-latent {xq['dppl']:+.3f} vs KIVI* {kv['dppl']:+.3f}")
    verdicts.append("(4) GQA at equal bits/equal memory: " + "; ".join(g) + ".")
    verdicts.append(
        "Tiny models (d=64, 2-4 layers, byte-level) have weak outliers; effect sizes are not the paper's. "
        "Measured ratios include the RoPE store (int32 position per token), large relative to d=64."
    )
    fig, axes = new_figure(2, 1, size=(5.5, 4.0))
    for ax, (tag, rows) in zip(axes[0], frontier.items()):
        for r in rows:
            if r["method"] == "fp16":
                continue
            fam = r["method"].rsplit("-", 1)[0]
            marker, color = {"kivi*": ("s", "tab:red"), "kivi": ("x", "tab:orange"), "xquant": ("o", "tab:blue"),
                             "xquant-cl": ("^", "tab:green"), "xquant-cl-open": ("v", "tab:gray")}[fam]  # fmt: skip
            ax.scatter(r["mem_ratio_paper"], max(r["dppl"], 1e-4), marker=marker, color=color, label=fam)
            ax.annotate(r["method"], (r["mem_ratio_paper"], max(r["dppl"], 1e-4)), fontsize=6)
        ax.set_yscale("log")
        ax.set_xlabel("cache size / FP16 KV (paper convention)")
        ax.set_ylabel("perplexity increase vs FP16 cache")
        ax.set_title(f"{tag}: dPPL vs memory")
        h, lab = ax.get_legend_handles_labels()
        uniq = dict(zip(lab, h))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
    ctx.record(
        "frontier",
        rows=mha + gqa,
        columns=[
            "model",
            "method",
            "mem_ratio_paper",
            "mem_ratio_measured",
            "ppl",
            "dppl",
            "k_rel_err",
            "v_rel_err",
        ],  # fmt: skip
        metrics={"fp16_ppl_mha": _get(mha, "fp16")["ppl"], "fp16_ppl_gqa": _get(gqa, "fp16")["ppl"]},
        params={
            "seq_len": seq_len,
            "windows": n_win,
            "group_mha": 64,
            "group_gqa": 32,
            "cl": CL_KW,
            "residual_length": 0,
            "protocol": "teacher-forced, every token's K/V from the cache",
        },  # fmt: skip
        claim="XQuant-4 beats KIVI*-2 at ~equal memory; XQuant-CL-3 saves ~10x with smaller degradation than "
        "KIVI*-2; closed-loop CL beats open-loop; GQA latent >= KIVI* at equal bits (Tables 1, 4).",
        verdict=" ".join(verdicts),
        figure=fig,
    )


def _record_layer_errors(ctx, per_layer):
    rows = []
    for (tag, name), errs in per_layer.items():
        if name in ("kivi*-2", "xquant-4", "xquant-cl-3", "xquant-cl-open-3", "xquant-2", "xquant-cl-2"):
            for e in errs:
                rows.append({"model": tag, "method": name, **e})
    mha = [r for r in rows if r["model"] == "llama-mha"]

    def mean(name, key):
        v = [r[key] for r in mha if r["method"] == name]
        return sum(v) / len(v) if v else float("nan")

    names = ("kivi*-2", "xquant-4", "xquant-cl-3")
    order = sorted(names, key=lambda n: mean(n, "k_rel_err") + mean(n, "v_rel_err"))
    verdict = (
        "MHA mean relative K/V error (same X in, isolated per layer): "
        + ", ".join(f"{n} K {mean(n, 'k_rel_err'):.3f} / V {mean(n, 'v_rel_err'):.3f}" for n in names)
        + f". Ordering best->worst: {' < '.join(order)}."
        + f" Open-loop CL-3: K {mean('xquant-cl-open-3', 'k_rel_err'):.3f} vs closed {mean('xquant-cl-3', 'k_rel_err'):.3f}."
    )
    ctx.record(
        "layer-errors",
        rows=rows,
        columns=["model", "method", "layer", "k_rel_err", "v_rel_err"],
        claim="At equal memory, K/V rebuilt from quantized X (or CL deltas) are closer to the exact K/V than "
        "KIVI's quantized K/V (DESIGN.md §3.3 E3; paper's mechanism for Tables 1/4).",
        verdict=verdict,
    )


def _record_similarity(ctx, models, probe):
    rows = []
    for tag, (model, _, _) in models.items():
        for r in cross_layer_similarity(model, probe):
            rows.append({"model": tag, **r})
    mx = sum(r["cos_X"] for r in rows) / len(rows)
    mk = sum(r["cos_K"] for r in rows) / len(rows)
    mv = sum(r["cos_V"] for r in rows) / len(rows)
    fig, axes = new_figure(1, 1)
    ax = axes[0][0]
    for key in ("cos_X", "cos_K", "cos_V"):
        ax.plot(range(len(rows)), [r[key] for r in rows], marker="o", label=key)
    ax.set_xticks(
        range(len(rows)), [f"{r['model'][-3:]} {r['layers']}" for r in rows], fontsize=7, rotation=30
    )
    ax.set_ylabel("mean per-token cosine, layer i vs i+1")
    ax.legend()
    holds = mx > max(mk, mv) + 0.2
    ctx.record(
        "cross-layer-similarity",
        rows=rows,
        metrics={"mean_cos_X": mx, "mean_cos_K": mk, "mean_cos_V": mv},
        claim="X is far more similar across adjacent layers than pre-RoPE K or V (paper Fig. 3), which is what "
        "XQuant-CL exploits.",
        verdict=f"mean cos(X_i, X_i+1) = {mx:.3f} vs K {mk:.3f}, V {mv:.3f} -> "
        f"{'holds' if holds else 'does not clearly hold'}; per-token range of X_i+1 - X_i is "
        f"{sum(r['range_dX_over_X'] for r in rows) / len(rows):.2f} of X's range.",
        figure=fig,
    )


def _record_generation(ctx, models, windows):
    model, group, _ = models["llama-mha"]
    gmodel, ggroup, _ = models["llama-gqa"]
    new = ctx.pick(smoke=16, cpu=48)
    prompt = windows[:2, :64]
    rows = []
    for tag, m, g in (("llama-mha", model, group), ("llama-gqa", gmodel, ggroup)):
        for name in ("kivi*-2", "xquant-4", "xquant-cl-3", "xquant-2"):
            cfg = parse_method(name, group_size=g, residual_length=g // 2, **CL_KW)
            rows.append({"model": tag, "method": name, "residual_length": g // 2,
                         "greedy_agreement": greedy_agreement(m, prompt, cfg, new)})  # fmt: skip
    ctx.record(
        "generation",
        rows=rows,
        params={"prompt_tokens": 64, "new_tokens": new, "batch": 2},
        claim="Real decoding (packed cache, residual window, exact current token) stays close to FP16 generation.",
        verdict="Greedy-token agreement with the full-precision cache over the decode: "
        + ", ".join(f"{r['model']} {r['method']} {r['greedy_agreement']:.2f}" for r in rows)
        + ". Agreement compounds after the first divergence, so it is a strict measure.",
    )


def _record_latency(ctx, model):
    contexts = ctx.pick(smoke=[128], cpu=[256, 1024, 2048])
    steps = ctx.pick(smoke=4, cpu=12)
    rows = []
    for c in contexts:
        for name in ("fp16", "kivi*-2", "xquant-4"):
            cfg = parse_method(name, group_size=64, residual_length=64)
            rows.append({"context": c, "method": name, "ms_per_token": decode_latency(model, cfg, c, steps)})
    x = [r for r in rows if r["method"] == "xquant-4"]
    f = [r for r in rows if r["method"] == "fp16"]
    ratio = [a["ms_per_token"] / b["ms_per_token"] for a, b in zip(x, f)]
    ctx.record(
        "latency",
        rows=rows,
        params={"device": "cpu", "backend": "torch reference", "batch": 1, "steps": steps},
        claim="(Paper, GPU) remat can hide under the memory-bound weight stream up to a break-even context.",
        verdict="CPU, torch reference, shared 2-core machine (timings inflated by other jobs): XQuant-4 decode is "
        + ", ".join(f"{r:.1f}x" for r in ratio)
        + " the FP16 cache's time per token at contexts "
        + ", ".join(str(c) for c in contexts)
        + ". Directional only; no GPU was available, so kernel throughput and GPU latency were not measured.",
    )


def _record_roofline(ctx):
    rows = []
    for hw in HARDWARE.values():
        for b in (1, 8):
            rows.append({"hardware": hw.name, "batch": b,
                         "mha_l_star_2bit": breakeven_context(4096, 2, hw, batch=b),
                         "mha_l_star_4bit": breakeven_context(4096, 4.25, hw, batch=b),
                         "gqa_l_star_2bit": breakeven_context(4096, 2, hw, groups=4, batch=b),
                         "gqa_l_star_4bit": breakeven_context(4096, 4.25, hw, groups=4, batch=b)})  # fmt: skip
    p = rows[0]
    ctx.record(
        "roofline",
        rows=rows,
        claim="Paper §3.4: break-even context ~2.3K (MHA, 2-bit) and ~40.6K (GQA latent) at batch 1.",
        verdict=f"Recomputed from eq. 3/4 (2-bit, batch 1): MHA {p['mha_l_star_2bit']:.0f} tokens, GQA "
        f"{p['gqa_l_star_2bit']:.0f} (paper: ~2.3K / ~40.6K); l* divides by the batch size (batch 8: MHA "
        f"{rows[1]['mha_l_star_2bit']:.0f}). Analytic only: no GPU was available to check it.",
    )
