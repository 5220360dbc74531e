"""`make bench` entry point: the issue's experiments (a) polynomial filter, (b) multi-key retrieval,
(c) IHA/MHA time ratio next to the FLOP ratio. Verdicts are computed from the measured numbers."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from paperworks_shared.bench import BenchContext, new_figure
from paperworks_shared.repro import seed_everything

from .config import IHAConfig
from .constructions import polynomial_filter_construction
from .flops import layer_flops
from .module import InterleavedHeadAttention
from .tasks import MultiKeySpec
from .tasks.polyfilter import PolyFilterTask
from .train import train_multikey, train_polyfilter


def _polyfilter(ctx: BenchContext) -> None:
    steps = ctx.pick(smoke=40, cpu=400, gpu=1500)
    arms = [("MHA H=2", 2, 1), ("IHA H=2 P=2", 2, 2), ("MHA H=4", 4, 1)]
    rows, curves = [], {}
    for name, h, p in arms:
        r = train_polyfilter(h, p, k=4, steps=steps, lr=3e-2, batch=32, seed=0)
        curves[name] = r["losses"]
        rows.append({"model": name, "heads": h, "P": p, "steps": steps, "test_mse": r["test_mse"],
                     "relative_mse": r["rel_mse"], "params": r["params"], "train_s": r["seconds"]})  # fmt: skip
    mha2, iha, mha4 = (r["relative_mse"] for r in rows[:3])
    # the paper's explicit construction (App. B.2) on the same test distribution: expressivity, not learning
    task = PolyFilterTask(k=4)
    xh, y = task.batch(64, torch.Generator().manual_seed(12345))
    pred = torch.stack(
        [polynomial_filter_construction(task.A, xi[:, : task.channels], 2) for xi in xh]
    ).float()
    cons = F.mse_loss(pred, y).item()
    rows.append({"model": "IHA H=2 P=2, paper construction (no training)", "heads": 2, "P": 2, "steps": 0,
                 "test_mse": cons, "relative_mse": cons / y.var().item(), "params": None, "train_s": 0.0})  # fmt: skip
    ratio = mha2 / max(iha, 1e-12)
    verdict = (
        f"At {steps} equal steps IHA(H=2,P=2) reached relative test MSE {iha:.4f} vs {mha2:.4f} for MHA(H=2) "
        f"(MSE ratio MHA/IHA = {ratio:.2f}) and {mha4:.4f} for MHA(H=4), with {rows[1]['params']} vs {rows[0]['params']} "
        f"and {rows[2]['params']} parameters. "
        + ("IHA beats equal-head MHA" if ratio > 1.5 else "IHA does NOT clearly beat equal-head MHA")
        + (" and matches/beats the 4-head MHA." if iha <= mha4 * 1.1 else "; the 4-head MHA is still better.")
        + f" The paper's hand-built H=P=2 construction has relative MSE {rows[3]['relative_mse']:.1e}: the capacity is "
        "there, but whether plain Adam finds it at this budget is what the trained rows show."
    )
    fig, ax = new_figure(1, 1)
    for name, c in curves.items():
        ax[0][0].semilogy([s for s, _ in c], [v for _, v in c], label=name)
    ax[0][0].set(xlabel="step", ylabel="train MSE", title="polynomial filter k=4, linear attention")
    ax[0][0].legend()
    ctx.record(
        "polyfilter",
        rows=rows,
        metrics={"mse_ratio_mha2_over_iha": ratio},
        params={"k": 4, "n_nodes": 16, "channels": 2, "steps": steps, "batch": 64, "seed": 0},
        claim="IHA with H=P=2 realises H^2=4 polynomial filters (App. B.2); MHA needs k=4 heads.",
        verdict=verdict,
        figure=fig,
    )


def _multikey(ctx: BenchContext) -> None:
    spec = MultiKeySpec(n_records=6, n_keys=6, n_values=12)
    steps = ctx.pick(smoke=15, cpu=250, gpu=2000)
    P = 2
    W = max(1, spec.seq_len // (2 * P * P))  # FLOP-matched local window N/(2P²) tokens
    arms = [
        ("MHA (2 global)", [(1, None), (1, None)]),
        ("IHA P=2 (2 global)", [(P, None), (P, None)]),
        (f"IHA hybrid (local W={W} + global MHA)", [(P, W), (1, None)]),
        (f"Global+Local P=1 (W={W})", [(1, W), (1, None)]),
    ]
    rows = []
    for name, layers in arms:
        r = train_multikey(layers, spec=spec, d_model=32, heads=4, steps=steps, seed=0, name=name)
        att = sum(layer_flops(spec.seq_len, 32, 4, p, w)["attention"] for p, w in layers)
        rows.append({"arm": name, "steps": steps, "accuracy": r["accuracy"], "chance": r["chance"],
                     "params": r["params"], "attn_flops": att, "train_s": r["seconds"]})  # fmt: skip
    base = rows[0]["attn_flops"]
    for r in rows:
        r["attn_flops_x_mha"] = r["attn_flops"] / base
    acc = {r["arm"]: r["accuracy"] for r in rows}
    best = max(acc, key=acc.get)
    verdict = (
        f"After {steps} steps (one seed): "
        + ", ".join(f"{k} {v:.3f}" for k, v in acc.items())
        + f" (chance {rows[0]['chance']:.3f}). Best: {best}. "
        + (
            "The FLOP-matched IHA hybrid beats the P=1 Global+Local control"
            if rows[2]["accuracy"] > rows[3]["accuracy"]
            else "The FLOP-matched IHA hybrid does NOT beat the P=1 Global+Local control"
        )
        + f" ({rows[2]['accuracy']:.3f} vs {rows[3]['accuracy']:.3f}); differences of a few points at this budget are "
        "within single-seed noise."
    )
    fig, ax = new_figure(1, 1)
    ax[0][0].bar(range(len(rows)), [r["accuracy"] for r in rows])
    ax[0][0].axhline(rows[0]["chance"], ls="--", c="gray", label="chance")
    ax[0][0].set_xticks(range(len(rows)), [r["arm"].split(" (")[0] for r in rows], rotation=15)
    ax[0][0].set(ylabel="accuracy", title=f"multi-key retrieval, {steps} steps")
    ax[0][0].legend()
    ctx.record(
        "multikey",
        rows=rows,
        params={
            "n_records": spec.n_records,
            "n_keys": spec.n_keys,
            "n_values": spec.n_values,
            "seq_len": spec.seq_len,
            "d_model": 32,
            "heads": 4,
            "layers": 2,
            "batch": 32,
        },  # fmt: skip
        claim="IHA improves multi-key retrieval (RULER MK +27..112% vs global attention at 4k-16k; Fig. 2).",
        verdict=verdict,
        figure=fig,
    )


class _MHA(nn.Module):
    """Plain causal MHA (the speed baseline): projections + SDPA is_causal."""

    def __init__(self, D, H):
        super().__init__()
        self.H = H
        self.qkv, self.o = nn.Linear(D, 3 * D, bias=False), nn.Linear(D, D, bias=False)

    def forward(self, x):
        b, n, D = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.H, D // self.H).permute(2, 0, 3, 1, 4)
        return self.o(
            F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, n, D)
        )


def _time(fn, reps):
    for _ in range(2):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _speed(ctx: BenchContext) -> None:
    dev = ctx.device()
    N = ctx.pick(smoke=64, cpu=256, gpu=2048)
    D, H, B = (256, 4, 2) if ctx.scale != "gpu" else (1024, 16, 4)
    reps = ctx.pick(smoke=3, cpu=10, gpu=20)
    x = torch.randn(B, N, D, device=dev)
    layers = {"MHA": (_MHA(D, H), 1, None)}
    for P in (1, 2, 4):
        layers[f"IHA P={P}"] = (InterleavedHeadAttention(IHAConfig(hidden_size=D, num_heads=H, num_pseudo_heads=P, rope_mode="none" if P == 1 else "virtual")), P, None)  # fmt: skip
    W = max(1, N // 8)
    layers[f"IHA P=2 local W={W}"] = (
        InterleavedHeadAttention(IHAConfig(hidden_size=D, num_heads=H, num_pseudo_heads=2, window=W)),
        2,
        W,
    )
    rows = []
    base_f = layer_flops(N, D, H)["total"]
    t_fwd0 = t_bwd0 = None
    for name, (mod, P, w) in layers.items():
        mod = mod.to(dev)
        run = (lambda m: lambda: m(x))(mod) if name == "MHA" else (lambda m: lambda: m(x)[0])(mod)
        with torch.no_grad():
            t_f = _time(run, reps)
        t_b = _time(lambda r=run: r().sum().backward(), reps)
        if name == "MHA":
            t_fwd0, t_bwd0 = t_f, t_b
        f = layer_flops(N, D, H, P, w)["total"] if name != "MHA" else base_f
        rows.append({"layer": name, "P": P, "window": w, "flop_ratio": f / base_f, "fwd_ms": 1e3 * t_f,
                     "fwd_bwd_ms": 1e3 * t_b, "time_ratio_fwd": t_f / t_fwd0, "time_ratio_fwd_bwd": t_b / t_bwd0})  # fmt: skip
    r2 = next(r for r in rows if r["layer"] == "IHA P=2")
    r4 = next(r for r in rows if r["layer"] == "IHA P=4")
    rl = rows[-1]
    verdict = (
        f"On {ctx.device()} (N={N}, D={D}, H={H}, fp32), fwd+bwd time ratio IHA/MHA: P=2 {r2['time_ratio_fwd_bwd']:.2f}x "
        f"(FLOP ratio {r2['flop_ratio']:.2f}x), P=4 {r4['time_ratio_fwd_bwd']:.2f}x (FLOP ratio {r4['flop_ratio']:.2f}x). "
        f"The FLOP-matched local layer (W={W}, FLOP ratio {rl['flop_ratio']:.2f}x) takes {rl['time_ratio_fwd_bwd']:.2f}x: "
        "SDPA with a dense window mask cannot skip blocks, so windows save nothing here. "
        f"IHA at P=1 (same maths as MHA) already takes {rows[1]['time_ratio_fwd_bwd']:.2f}x: that is this implementation's "
        "overhead (separate projections, mixing einsum, explicit collapse), not IHA's cost. "
        "Timings are inflated and noisy: the 2-core machine was shared with other jobs."
    )
    fig, ax = new_figure(1, 1)
    xs = range(len(rows))
    ax[0][0].bar([i - 0.2 for i in xs], [r["flop_ratio"] for r in rows], 0.4, label="FLOP ratio")
    ax[0][0].bar(
        [i + 0.2 for i in xs], [r["time_ratio_fwd_bwd"] for r in rows], 0.4, label="time ratio fwd+bwd"
    )
    ax[0][0].set_xticks(list(xs), [r["layer"] for r in rows], rotation=15)
    ax[0][0].set(ylabel="x MHA", title=f"one layer, N={N}, D={D}, H={H}")
    ax[0][0].legend()
    ctx.record(
        "speed",
        rows=rows,
        params={
            "N": N,
            "D": D,
            "H": H,
            "batch": B,
            "reps": reps,
            "device": str(dev),
            "threads": torch.get_num_threads(),
        },
        claim="Global IHA costs P^2 x MHA attention FLOPs; the 4:1 schedule with W=N/(2P^2) windows FLOP-matches MHA (App. C).",
        verdict=verdict,
        figure=fig,
    )


def run(ctx: BenchContext) -> None:
    seed_everything(0)
    _polyfilter(ctx)
    _multikey(ctx)
    _speed(ctx)
