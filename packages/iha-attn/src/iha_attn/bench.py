"""`make bench` entry point: the issue's experiments (a) polynomial filter, (b) multi-key retrieval,
(c) IHA/MHA time ratio next to the FLOP ratio. Verdicts are computed from the measured numbers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from paperworks_shared.bench import BenchContext, new_figure
from paperworks_shared.repro import seed_everything

from .config import IHAConfig
from .constructions import polynomial_filter_construction
from .flops import layer_flops
from .masks import virtual_mask
from .module import InterleavedHeadAttention
from .rope import apply_rope, cos_sin, inv_freq
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
    arms: list[tuple[str, list[tuple[int, int | None]]]] = [
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
    best = max(acc, key=lambda k: acc[k])
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
    """The speed baseline, built like the IHA layer: separate q/k/v/o projections, RoPE at token
    positions (the same rotate-half RoPE and θ as IHA's), the same SDPA backend (``is_causal`` globally,
    the same dense window mask for a local layer)."""

    def __init__(self, D: int, H: int, window: int | None = None):
        super().__init__()
        self.H, self.d, self.window = H, D // H, window
        self.q_proj, self.k_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.register_buffer("inv_freq", inv_freq(self.d), persistent=False)

    def forward(self, x):
        b, n, D = x.shape
        q, k, v = (
            p(x).view(b, n, self.H, self.d).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        cos, sin = cos_sin(torch.arange(n, device=x.device), self.inv_freq)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.window is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            o = F.scaled_dot_product_attention(
                q, k, v, attn_mask=virtual_mask(n, n, 1, "flat_causal", self.window, device=x.device)
            )
        return self.o_proj(o.transpose(1, 2).reshape(b, n, D))


class _Stack(nn.Module):
    """Residual stack of attention layers (the 4:1 schedule as a whole, vs the same depth of MHA)."""

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            y = layer(x)
            x = x + (y[0] if isinstance(y, tuple) else y)
        return x


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


def _iha(D: int, H: int, P: int, window: int | None = None) -> InterleavedHeadAttention:
    return InterleavedHeadAttention(IHAConfig(hidden_size=D, num_heads=H, num_pseudo_heads=P, rope_mode="virtual", window=window))  # fmt: skip


def _speed(ctx: BenchContext) -> None:
    """Issue 21.7: the fair speed table. Same RoPE (rotate-half, θ=1e4; IHA at virtual positions n·P+p,
    P=1 = token positions), same projection layout (separate q/k/v/o, no bias), same backend (SDPA),
    same width/heads/batch/dtype; one layer at P = 1, 2, 4 and the 4:1 local schedule as a whole
    5-layer stack (4 local IHA P=2 with W = N/(2P²) + 1 global MHA) vs 5 MHA layers; forward and
    forward+backward medians; the time ratio next to the analytic FLOP ratio, measured in one run."""
    dev = ctx.device()
    N = ctx.pick(smoke=64, cpu=256, full=512, gpu=2048)
    D, H, B = (256, 4, 2) if ctx.scale != "gpu" else (1024, 16, 4)
    reps = ctx.pick(smoke=3, cpu=7, full=15, gpu=20)
    torch.manual_seed(0)
    x = torch.randn(B, N, D, device=dev)
    W = max(1, N // (2 * 2 * 2))
    base_layer = layer_flops(N, D, H)["total"]
    arms: list[tuple[str, nn.Module, nn.Module, float, float]] = []  # name, IHA arm, MHA arm, FLOPs
    for P in (1, 2, 4):
        arms.append((f"layer P={P}", _iha(D, H, P), _MHA(D, H), layer_flops(N, D, H, P)["total"], base_layer))
    iha_stack = _Stack([_iha(D, H, 2, W) for _ in range(4)] + [_MHA(D, H)])
    mha_stack = _Stack([_MHA(D, H) for _ in range(5)])
    arms.append((f"4:1 stack P=2 W={W}", iha_stack, mha_stack, 4 * layer_flops(N, D, H, 2, W)["total"] + base_layer, 5 * base_layer))  # fmt: skip
    arms.append((f"Global+Local P=1 stack W={W}", _Stack([_MHA(D, H, W) for _ in range(4)] + [_MHA(D, H)]), mha_stack, 4 * layer_flops(N, D, H, 1, W)["total"] + base_layer, 5 * base_layer))  # fmt: skip
    rows = []
    for name, iha_m, mha_m, f_iha, f_mha in arms:
        res = {}
        for tag, m in (("iha", iha_m.to(dev)), ("mha", mha_m.to(dev))):
            run = (lambda mod: lambda: (lambda y: y[0] if isinstance(y, tuple) else y)(mod(x)))(m)
            with torch.no_grad():
                res[f"{tag}_fwd"] = _time(run, reps)
            res[f"{tag}_fwd_bwd"] = _time(lambda r=run: r().sum().backward(), reps)
        rows.append({"arm": name, "flop_ratio": f_iha / f_mha,
                     "time_ratio_fwd": res["iha_fwd"] / res["mha_fwd"], "time_ratio_fwd_bwd": res["iha_fwd_bwd"] / res["mha_fwd_bwd"],
                     "iha_fwd_ms": 1e3 * res["iha_fwd"], "mha_fwd_ms": 1e3 * res["mha_fwd"],
                     "iha_fwd_bwd_ms": 1e3 * res["iha_fwd_bwd"], "mha_fwd_bwd_ms": 1e3 * res["mha_fwd_bwd"]})  # fmt: skip
    by = {r["arm"].split(" W=")[0]: r for r in rows}
    r1, r2, r4 = by["layer P=1"], by["layer P=2"], by["layer P=4"]
    st = by["4:1 stack P=2"]
    gl = by["Global+Local P=1 stack"]
    verdict = (
        f"On {dev} (N={N}, D={D}, H={H}, batch {B}, fp32, {torch.get_num_threads()} threads), IHA/MHA with the same RoPE, "
        f"projection layout and SDPA backend, fwd+bwd time ratio (FLOP ratio): P=1 {r1['time_ratio_fwd_bwd']:.2f}x "
        f"({r1['flop_ratio']:.2f}x), P=2 {r2['time_ratio_fwd_bwd']:.2f}x ({r2['flop_ratio']:.2f}x), P=4 "
        f"{r4['time_ratio_fwd_bwd']:.2f}x ({r4['flop_ratio']:.2f}x); the 4:1 stack (W={W}) {st['time_ratio_fwd_bwd']:.2f}x "
        f"({st['flop_ratio']:.2f}x), its P=1 Global+Local control {gl['time_ratio_fwd_bwd']:.2f}x ({gl['flop_ratio']:.2f}x). "
        "Forward only: "
        + ", ".join(f"{r['arm']} {r['time_ratio_fwd']:.2f}x" for r in rows)
        + ". P=1 isolates the implementation's overhead (mixing einsum, collapse) at equal FLOPs up to the mixing terms. "
        "SDPA on CPU applies a window as a dense mask (no block skipping), so the local layers' FLOP saving is not "
        "realised in time here; on GPU the flex backend (compiled, cached BlockMask) is the block-sparse path. "
        "A shared 2-core machine: ratios, not absolute times, are the result."
    )
    fig, ax = new_figure(1, 1)
    xs = range(len(rows))
    ax[0][0].bar([i - 0.27 for i in xs], [r["flop_ratio"] for r in rows], 0.27, label="FLOP ratio")
    ax[0][0].bar([i for i in xs], [r["time_ratio_fwd"] for r in rows], 0.27, label="time ratio fwd")
    ax[0][0].bar(
        [i + 0.27 for i in xs], [r["time_ratio_fwd_bwd"] for r in rows], 0.27, label="time ratio fwd+bwd"
    )
    ax[0][0].set_xticks(list(xs), [r["arm"].split(" W=")[0] for r in rows], rotation=15)
    ax[0][0].set(ylabel="IHA / MHA", title=f"N={N}, D={D}, H={H}")
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
            "window": W,
            "device": str(dev),
            "threads": torch.get_num_threads(),
            "backend": "sdpa",
            "rope": "rotate-half theta=1e4 (IHA virtual)",
            "projections": "separate q/k/v/o, no bias, both arms",
        },  # fmt: skip
        claim="Global IHA costs P^2 x MHA attention FLOPs; the 4:1 schedule with W=N/(2P^2) windows FLOP-matches MHA (App. C).",
        verdict=verdict,
        figure=fig,
    )


def run(ctx: BenchContext) -> None:
    seed_everything(0)
    _polyfilter(ctx)
    _multikey(ctx)
    _speed(ctx)
