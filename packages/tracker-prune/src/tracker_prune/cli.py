"""`tracker-prune`: train, prune (search + threshold + fine-tune), slim, evaluate and bench trackers.

Artefacts are `.pt` files holding an architecture spec plus a state dict (see `tracker_prune.io`).
Errors follow `paperworks_shared.cli`: a bad argument, a missing/corrupt checkpoint or an unwritable
`--out` is one line on stderr and exit code 2, before any training starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from paperworks_shared.cli import (
    UserError,
    add_debug_flag,
    check_out_dir,
    check_out_file,
    existing_file,
    fraction,
    int_range,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
    require,
    run_cli,
)

PROG = "tracker-prune"


def _load(path):
    """Load a user checkpoint; a missing, corrupt or foreign file is a UserError naming the path."""
    from .io import CheckpointError, load

    try:
        return load(path)
    except CheckpointError as e:
        raise UserError(str(e)) from None


def _example(m):
    import torch

    c = m.config
    return (
        torch.zeros(1, 3, c["template_size"], c["template_size"]),
        torch.zeros(1, 3, c["search_size"], c["search_size"]),
    )


def _note(what: str, items) -> None:
    for it in items:
        print(f"{PROG}: note: {what}: {it}", file=sys.stderr)


def _data(args):
    from .data import make_sequence
    from .train import make_pool

    pool = make_pool(args.pool, seed=args.seed)
    test = [make_sequence(10**6 + k, args.test_len) for k in range(args.test_sequences)]
    return pool, test


def _common(p):
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--pool", type=positive_int, default=40, help="procedural training sequences")
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--test-sequences", type=positive_int, default=8)
    p.add_argument("--test-len", type=int_range(2), default=30, help="frames per test sequence (>= 2)")


def cmd_train(args):
    import torch

    from .io import save
    from .trackers import build_tracker
    from .train import evaluate, train

    torch.manual_seed(args.seed)
    pool, test = _data(args)
    m = build_tracker(args.arch)
    train(m, args.steps, pool, batch=args.batch, seed=args.seed, progress=True, desc=f"train {args.arch}")
    save(m, args.out)
    print(json.dumps({"saved": args.out, **evaluate(m, test)}))


def cmd_prune(args):
    from .io import save
    from .pruner import Pruner
    from .train import evaluate, train

    require(
        args.threshold is None or args.method == "chipnet",
        "--threshold is only meaningful with --method chipnet (gates in [0, 1])",
    )
    m = _load(args.model)
    example = _example(m)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported below as notes
            p = Pruner(
                m,
                args.method,
                weights={"attn": args.w_attn, "mlp": args.w_mlp, "conv": args.w_conv},
                example_inputs=example if args.kind == "flops" else None,
                budget=args.budget if args.method == "chipnet" else None,
                budget_kind=args.kind,
                seed=args.seed,
                group_residual=args.group_residual,
            )
    except ValueError as e:
        raise UserError(f"{args.model}: {e}") from None
    _note("left dense", p.skipped)
    if args.min_keep == 0:  # a budget that keeps nothing at all is refused before the search runs
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                p.masks(args.budget, kind=args.kind, scope=args.scope, min_keep=0, threshold=args.threshold)
        except ValueError as e:
            raise UserError(str(e)) from None
    pool, test = _data(args)
    if args.search_steps and args.method in ("vitslim", "netslim", "chipnet"):
        train(
            m,
            args.search_steps,
            pool,
            batch=args.batch,
            lr=1e-3,
            seed=args.seed + 2,
            regularizer=p.regularizer,
            callback=p.search_callback(args.search_steps),
            gate_lr=args.gate_lr if args.method == "chipnet" else None,
            progress=True,
            desc="search",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported below as notes
            masks = p.masks(
                args.budget,
                kind=args.kind,
                scope=args.scope,
                min_keep=args.min_keep,
                threshold=args.threshold,
            )
    except ValueError as e:
        raise UserError(str(e)) from None
    _note("emptied by --min-keep 0", p.emptied)
    p.apply(masks, fold_scales=not args.no_fold)
    before = evaluate(m, test)
    if args.finetune_steps:
        train(
            m,
            args.finetune_steps,
            pool,
            batch=args.batch,
            lr=1e-3,
            seed=args.seed + 1,
            progress=True,
            desc="fine-tune",
        )
    save(m, args.out)
    extra = {"skipped": [str(x) for x in p.skipped], "emptied": list(p.emptied)}
    print(json.dumps({"saved": args.out, "auc_before_ft": before["auc"], **evaluate(m, test), **extra}))


def cmd_slim(args):
    from .cost import count_params
    from .io import save
    from .slim import slim

    m = _load(args.model)
    try:
        s = slim(m)
    except ValueError as e:
        raise UserError(f"{args.model}: {e}") from None
    save(s, args.out)
    print(json.dumps({"saved": args.out, "params_masked": count_params(m), "params_slim": count_params(s)}))


def cmd_evaluate(args):
    from .cost import cost_report
    from .train import evaluate

    m = _load(args.model)
    x = _example(m)
    _, test = _data(args)
    print(json.dumps({**evaluate(m, test), **cost_report(m, x)}))


def cmd_bench(args):
    from paperworks_shared.bench import BenchContext

    from .bench import run

    run(BenchContext("tracker-prune", args.scale, args.results))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a tiny tracker from scratch on procedural data")
    t.add_argument("--arch", choices=["cnn", "vit", "hybrid"], default="vit")
    t.add_argument("--steps", type=positive_int, default=150)
    t.add_argument("--out", required=True)
    _common(t)
    t.set_defaults(fn=cmd_train)
    p = sub.add_parser("prune", help="sparsity search, threshold at a budget, apply masks, fine-tune")
    p.add_argument("--model", required=True, type=existing_file)
    p.add_argument("--out", required=True)
    p.add_argument("--method", default="vitslim", choices=["vitslim", "netslim", "chipnet", "l1", "random"])
    p.add_argument(
        "--gate-lr",
        type=positive_float,
        default=0.2,
        help="chipnet: learning rate of the gate parameters psi",
    )
    p.add_argument("--budget", type=fraction, default=0.25, help="fraction in (0, 1] of prunable units kept")
    p.add_argument("--kind", default="channels", choices=["channels", "params", "flops"])
    p.add_argument("--scope", default="global", choices=["global", "layerwise"])
    p.add_argument(
        "--min-keep",
        type=nonneg_int,
        default=1,
        help="units kept per layer at least (0 lets a layer be emptied; every emptied layer is reported, "
        "and a budget that would keep nothing at all is refused)",
    )
    p.add_argument("--search-steps", type=nonneg_int, default=50)
    p.add_argument("--finetune-steps", type=nonneg_int, default=30)
    p.add_argument("--w-attn", type=nonneg_float, default=2e-3)
    p.add_argument("--w-mlp", type=nonneg_float, default=1e-3)
    p.add_argument("--w-conv", type=nonneg_float, default=2e-3)
    p.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="chipnet: keep gates with zeta_t >= THRESHOLD (e.g. 0.5) instead of ChipNet's budget threshold",
    )
    p.add_argument(
        "--group-residual",
        action="store_true",
        help="also prune residual-stream channels as one coupled group per stream (embed dim, CNN stages)",
    )
    p.add_argument(
        "--no-fold", action="store_true", help="official compress: set kept gates to 1 without folding"
    )
    _common(p)
    p.set_defaults(fn=cmd_prune)
    s = sub.add_parser("slim", help="physically slim a pruned (masked) model")
    s.add_argument("--model", required=True, type=existing_file)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_slim)
    e = sub.add_parser("evaluate", help="OPE success AUC / precision / AO / SR and params / FLOPs / latency")
    e.add_argument("--model", required=True, type=existing_file)
    _common(e)
    e.set_defaults(fn=cmd_evaluate)
    b = sub.add_parser("bench", help="run the package benchmark")
    b.add_argument("--scale", default="smoke", choices=["smoke", "cpu", "gpu"])
    b.add_argument("--results", default="benchmarks/results")
    b.set_defaults(fn=cmd_bench)
    return parser


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    if getattr(args, "out", None) is not None:  # before any loading or training
        check_out_file(args.out)
    if args.cmd == "bench":
        check_out_dir(args.results, what="--results")
    import torch

    torch.set_num_threads(1)
    args.fn(args)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
