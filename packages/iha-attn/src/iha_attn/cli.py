"""Console script ``iha-attn`` (subcommands train, construct, flops, patch-check, bench).

``iha-train`` is an alias of the same program (same help); for old command lines it reads arguments
that start with an option as ``iha-attn train ...``. The paperworks CLI convention
(`paperworks_shared.cli`): every argument is range-checked at parse time and ``--out`` (a directory) is
proved writable before any training, user mistakes are one line on stderr with exit code 2, ``--debug``
shows tracebacks. Results are written atomically.
"""

from __future__ import annotations

import argparse
import sys

from paperworks_shared.cli import (
    UserError,
    add_bench_command,
    add_debug_flag,
    add_runtime_args,
    apply_runtime_args,
    check_out_dir,
    choice_of,
    int_range,
    nonneg_int,
    positive_int,
    require,
    run_cli,
)

MAX_P = 64  # pseudo-heads per head; the attention cost grows as P², so larger values are refused
MAX_HEADS = 64
MAX_STEPS = 10_000_000
TINY_D_MODEL = 64  # width of the synthetic-task LMs (multikey, relcomp)
SUBCOMMANDS = ("train", "construct", "flops", "patch-check", "bench")
ATTN_ARMS = ("mha", "iha", "hybrid", "global-local")


def _attn_arm(text: str) -> str:
    """--attn value; the old spelling ``global_local`` is read as ``global-local`` (kebab-case names)."""
    return choice_of(ATTN_ARMS)(text.replace("_", "-"))


def _check_train_args(args) -> None:
    """Cross-argument checks, before any work (each names the option)."""
    require(
        args.attn in ("mha", "iha") or args.task == "multikey",
        f"--attn {args.attn} exists only for --task multikey (a local layer + a global MHA layer)",
    )
    if args.task == "multikey" or args.task.startswith("relcomp"):
        heads = args.heads if args.task == "multikey" else 4
        require(
            TINY_D_MODEL % heads == 0 and (TINY_D_MODEL // heads) % 2 == 0,
            f"--heads {heads}: the {TINY_D_MODEL}-wide task model needs heads dividing {TINY_D_MODEL} with an "
            "even head dim (1, 2, 4, 8, 16 or 32)",
        )
    if args.task == "multikey":
        require(
            args.keys**2 >= args.records,
            f"--records {args.records} needs at least that many distinct key pairs (--keys {args.keys} gives "
            f"{args.keys**2})",
        )
    if args.task.startswith("relcomp"):
        require(args.m >= 2, f"--m {args.m}: a relation needs m >= 2")
    if args.out:
        check_out_dir(args.out)


def _out_name(args) -> str:
    """The file ``train`` writes inside ``--out``: ``<task>-<attn>.json`` (kebab-case experiment name)."""
    return f"{args.task}-{args.attn}.json"


def _train(args) -> dict:
    from pathlib import Path

    from paperworks_shared.files import atomic_write_json

    from .tasks import MultiKeySpec
    from .train import train_multikey, train_polyfilter, train_relcomp

    device = apply_runtime_args(args)
    progress = not args.no_progress
    seeds = [args.seed] if args.seed is not None else list(range(args.seeds))
    results = []
    for seed in seeds:
        if args.task == "polyfilter":
            P = 1 if args.attn == "mha" else args.P
            r = train_polyfilter(
                args.heads, P, k=args.k, steps=args.steps, seed=seed, progress=progress, device=device
            )
        elif args.task == "multikey":
            spec = MultiKeySpec(n_records=args.records, n_keys=args.keys, n_values=args.values)
            W = args.window or max(1, spec.seq_len // (2 * args.P * args.P))
            layers = {
                "mha": [(1, None), (1, None)],
                "iha": [(args.P, None), (args.P, None)],
                "hybrid": [(args.P, W), (1, None)],
                "global-local": [(1, W), (1, None)],
            }[args.attn]
            r = train_multikey(
                layers,
                spec=spec,
                heads=args.heads,
                steps=args.steps,
                seed=seed,
                progress=progress,
                name=args.attn,
                device=device,
            )
        else:
            P = 1 if args.attn == "mha" else args.P
            r = train_relcomp(
                P,
                m=args.m,
                hops=3 if args.task == "relcomp3" else 2,
                steps=args.steps,
                seed=seed,
                progress=progress,
                device=device,
            )
        r["seed"] = seed
        results.append(r)
        metric = "test_mse" if args.task == "polyfilter" else "accuracy"
        print(f"seed {seed}: {metric}={r[metric]:.5f} params={r['params']} ({r['seconds']:.1f}s)")
    skip = ("debug", "func", "bench_package")
    out = {
        "args": {k: v for k, v in vars(args).items() if k not in skip},
        "device": str(device),
        "runs": results,
    }
    if args.out:
        path = Path(args.out) / _out_name(args)
        try:
            atomic_write_json(path, out)  # temp file + rename: never a half-written result
        except ValueError as e:  # strict JSON refuses NaN/inf, e.g. a diverged loss
            raise UserError(f"results not written to {path}: {e}") from None
        print(f"wrote {path}")
    return out


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", type=choice_of(["polyfilter", "multikey", "relcomp2", "relcomp3"]), default="polyfilter",
                   help="polyfilter, multikey, relcomp2 or relcomp3")  # fmt: skip
    p.add_argument("--attn", type=_attn_arm, default="iha",
                   help="mha = P=1; iha = P pseudo-heads everywhere; hybrid/global-local (multikey): local layer + global MHA")  # fmt: skip
    p.add_argument("--heads", type=int_range(1, MAX_HEADS), default=2, help="attention heads H")
    p.add_argument("--P", type=int_range(1, MAX_P), default=2, help=f"pseudo-heads per head (1..{MAX_P})")
    p.add_argument("--steps", type=int_range(1, MAX_STEPS), default=1000)
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds", type=int_range(1, 1000), default=1, help="number of seeds: runs seeds 0..N-1"
    )
    seeds.add_argument("--seed", type=nonneg_int, default=None, help="one run with this seed")
    p.add_argument("--k", type=int_range(1, 64), default=4, help="polyfilter: number of powers A^0..A^(k-1)")
    p.add_argument("--m", type=int_range(2, 16), default=5, help="relcomp: relation size m (sequence m^2)")
    p.add_argument("--records", type=int_range(1, 4096), default=6, help="multikey: records per sequence")
    p.add_argument("--keys", type=int_range(1, 4096), default=6, help="multikey: key-token vocabulary")
    p.add_argument("--values", type=int_range(1, 65536), default=12, help="multikey: value-token vocabulary")
    p.add_argument("--window", type=positive_int, default=None,
                   help="multikey: local window in tokens (default N/(2P^2))")  # fmt: skip
    p.add_argument("--out", default=None, metavar="DIR",
                   help="directory; writes <task>-<attn>.json (metrics, loss curves, parameter counts)")  # fmt: skip
    add_runtime_args(p)
    add_debug_flag(p)


def _construct(args) -> None:
    import torch

    from .constructions import (
        cpm3_workspace_construction,
        cpm3_workspace_target,
        polynomial_filter_construction,
        polynomial_filter_target,
        tanh_witness,
    )

    g = torch.Generator().manual_seed(args.seed)
    for H in (2, 3):
        A = torch.randn(12, 12, generator=g, dtype=torch.float64)
        A = 0.9 * A / torch.linalg.eigvals(A).abs().max()
        X = torch.randn(12, 2, generator=g, dtype=torch.float64)
        err = (polynomial_filter_construction(A, X, H) - polynomial_filter_target(A, X, H * H)).abs().max()
        print(f"polynomial filter H=P={H} (k={H * H}): max error {err:.2e}")
    for N in (4, 9):
        x = torch.randn(N, generator=g, dtype=torch.float64)
        err = (cpm3_workspace_construction(x) - cpm3_workspace_target(x, N)).abs().max()
        print(f"CPM-3 workspace N={N}: max error vs all cyclic shifts {err:.2e}")
    x = torch.randn(3, generator=g, dtype=torch.float64)
    w = [torch.randn(3, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    f1, f2 = tanh_witness(x, *w), tanh_witness(2 * x, *w)
    print(f"tanh witness: |f(2x) - 2 f(x)| = {(f2 - 2 * f1).abs().max():.3f} (MHA would give 0)")


def _flops(args) -> None:
    from .flops import layer_flops

    base = layer_flops(args.N, args.D, args.H)
    for P in args.P:
        for w in (None, max(1, args.N // (2 * P * P))):
            f = layer_flops(args.N, args.D, args.H, P, w)
            print(f"P={P} window={w}: attention x{f['attention'] / base['attention']:.2f}, "
                  f"layer x{f['total'] / base['total']:.2f} MHA")  # fmt: skip


def _patch_check(args) -> None:
    import torch

    from paperworks_shared.models import tiny_causal_lm

    from .hf import patch_model_with_iha

    device = apply_runtime_args(args)
    model = tiny_causal_lm(args.arch).to(device)
    ids = torch.randint(0, 256, (1, 16), device=device)
    with torch.no_grad():
        ref = model(ids).logits
        try:
            mixes = patch_model_with_iha(model, layers=args.layers, P=args.P, seq_len=16)
        except ValueError as e:  # e.g. a schedule that selects no layer of the 2-layer model
            raise UserError(f"--layers {args.layers!r}: {e}") from None
        out = model(ids).logits
    extra = sum(m.extra_param_count() for m in mixes)
    print(f"{args.arch}: patched {len(mixes)} layers, +{extra} params, max |logit diff| at mha_exact init = "
          f"{(out - ref).abs().max():.2e}"
          + (" (local windows change the function; only 'all' is an exact retrofit)" if args.layers != "all" else ""))  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="iha-attn", description="Interleaved Head Attention (arXiv 2602.21371) tools."
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train a synthetic task (polyfilter, multikey, relcomp2/3)")
    _add_train_args(tr)
    c = sub.add_parser("construct", help="run the paper's explicit constructions and print their errors")
    c.add_argument("--seed", type=nonneg_int, default=0)
    add_debug_flag(c)
    f = sub.add_parser("flops", help="analytic FLOP ratios IHA/MHA (global and FLOP-matched local)")
    f.add_argument("--N", type=int_range(1, 10**9), default=256, help="sequence length (tokens)")
    f.add_argument("--D", type=int_range(1, 10**6), default=256, help="model width")
    f.add_argument("--H", type=int_range(1, 4096), default=4, help="heads")
    f.add_argument("--P", type=int_range(1, MAX_P), nargs="+", default=[2, 4])
    add_debug_flag(f)
    pc = sub.add_parser("patch-check", help="patch a tiny transformers model and check exact retrofit")
    pc.add_argument(
        "--arch", default="llama", type=choice_of(["llama", "llama-gqa", "mistral", "qwen2", "qwen3"])
    )
    pc.add_argument("--P", type=int_range(1, MAX_P), default=2)
    pc.add_argument("--layers", default="all", help="'all' or 'schedule:<local>:<global>'")
    add_runtime_args(pc, progress=False)
    add_debug_flag(pc)
    b = add_bench_command(sub, "iha-attn")
    add_debug_flag(b)
    add_debug_flag(ap)
    return ap


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "train":
        _check_train_args(args)
    elif args.cmd == "flops":
        require(args.D % args.H == 0, f"--D {args.D} is not divisible by --H {args.H}")
    elif args.cmd == "patch-check":
        import re

        require(
            args.layers == "all" or re.fullmatch(r"schedule:\d+:[1-9]\d*", args.layers) is not None,
            f"--layers {args.layers!r}: use 'all' or 'schedule:<local>:<global>' (global >= 1)",
        )
    elif args.cmd == "bench":
        return int(args.func(args) or 0)
    {"train": _train, "construct": _construct, "flops": _flops, "patch-check": _patch_check}[args.cmd](args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``iha-attn``: the package's one console script."""
    return run_cli(_main, argv, prog="iha-attn")


def _legacy_train_argv(argv: list[str]) -> list[str]:
    """``iha-train --task ...`` (the old separate program) means ``iha-attn train --task ...``."""
    first = next((a for a in argv if a != "--debug"), None)
    if first is not None and first not in SUBCOMMANDS and first not in ("-h", "--help"):
        return ["train", *argv]
    return argv


def train_main(argv: list[str] | None = None) -> int:
    """``iha-train``: an alias of ``iha-attn`` (same program, same help); option-first argv runs ``train``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return run_cli(_main, _legacy_train_argv(args), prog="iha-attn")


if __name__ == "__main__":
    sys.exit(main())
