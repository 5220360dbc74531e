"""`tracker-prune`: train, prune (search + threshold + fine-tune), slim, evaluate and bench trackers.

Every command that writes takes ``--out DIR`` and names the files inside it (``model.pt``, the
checkpoint; ``result.json``, the printed record). ``--model`` takes such a folder or a ``.pt`` file.
Data: procedural sequences by default, or ``--data-root DIR --dataset got10k|lasot`` (frames decoded
on access, DataLoader ``--workers``). Runtime: ``--device``, ``--threads``, ``--no-progress``.
Errors follow `paperworks_shared.cli`: a bad argument, a missing/corrupt checkpoint or dataset, or an
unwritable ``--out`` is one line on stderr and exit code 2, before any training starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from paperworks_shared.cli import (
    UserError,
    add_bench_command,
    add_debug_flag,
    add_runtime_args,
    apply_runtime_args,
    check_out_dir,
    existing_dir,
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
MODEL_FILE = "model.pt"
RESULT_FILE = "result.json"
DATASETS = ("got10k", "lasot")


def model_path(text: str) -> Path:
    """``--model``: a checkpoint file, or a folder holding ``model.pt`` (what ``--out`` wrote)."""
    p = Path(text).expanduser()
    if p.is_dir():
        if (p / MODEL_FILE).is_file():
            return p / MODEL_FILE
        raise argparse.ArgumentTypeError(f"{text!r}: not a file, and the folder has no {MODEL_FILE}")
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text!r}: no such file")
    return p


def _load(path):
    """Load a user checkpoint; a missing, corrupt or foreign file is a UserError naming the path."""
    from .io import CheckpointError, load

    try:
        return load(path)
    except (CheckpointError, FileNotFoundError) as e:
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


def _real_sequences(args, split: str, limit: int | None):
    """Lazy real videos (annotations only; nothing decoded). Bad layout -> UserError naming the path."""
    from .data import load_got10k, load_lasot

    loader = load_got10k if args.dataset == "got10k" else load_lasot
    try:
        seqs = loader(args.data_root, split, max_sequences=limit)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--data-root {args.data_root}: {e}") from None
    require(bool(seqs), f"--data-root {args.data_root}: no {args.dataset} {split} sequences")
    return seqs


def _eval_split(args) -> str:
    return args.split or ("val" if args.dataset == "got10k" else "test")


def _data(args, *, need_train: bool):
    """(pool, batches, test): procedural pool or a real-video pair loader, and the evaluation sequences.

    Everything is listed and validated here, before any frame is decoded or any model trained.
    """
    from .data import make_sequence

    if args.data_root is None:
        from .train import make_pool

        pool = make_pool(args.pool, seed=args.seed) if need_train else None
        test = [make_sequence(10**6 + k, args.test_len) for k in range(args.test_sequences)]
        return pool, None, test
    test = _real_sequences(args, _eval_split(args), args.test_sequences)
    if args.dataset == "got10k" and _eval_split(args) == "test" and args.cmd != "evaluate":
        raise UserError("GOT-10k test has first-frame ground truth only; evaluate on --split val")
    batches = None
    if need_train:
        from .data import PairDataset, pair_loader

        train_seqs = _real_sequences(args, "train", args.max_sequences)
        try:
            ds = PairDataset(train_seqs, length=max(args.batch * 64, 1), seed=args.seed)
        except ValueError as e:
            raise UserError(f"--data-root {args.data_root}: {e}") from None
        batches = pair_loader(ds, args.batch, workers=args.workers)
    return None, batches, test


def _common(p, *, train: bool = True):
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of this run")
    if train:
        p.add_argument("--pool", type=positive_int, default=40, help="procedural training sequences")
        p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--test-sequences", type=positive_int, default=8, help="evaluation sequences")
    p.add_argument(
        "--test-len", type=int_range(2), default=30, help="frames per procedural test sequence (>= 2)"
    )
    d = p.add_argument_group("real data (default: procedural sequences)")
    d.add_argument("--data-root", type=existing_dir, default=None, help="dataset folder (GOT-10k or LaSOT)")
    d.add_argument("--dataset", choices=DATASETS, default=None, help="layout of --data-root")
    d.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default=None,
        help="evaluation split (default: got10k val, lasot test); training always uses train",
    )
    d.add_argument("--max-sequences", type=positive_int, default=None, help="use at most N training videos")
    d.add_argument("--workers", type=nonneg_int, default=0, help="DataLoader worker processes")
    add_runtime_args(p)


def _check_data_args(args) -> None:
    if getattr(args, "data_root", None) is None:
        require(
            getattr(args, "dataset", None) is None and getattr(args, "split", None) is None,
            "--dataset / --split need --data-root",
        )
        return
    require(args.dataset is not None, "--data-root needs --dataset got10k or lasot")
    if args.dataset == "lasot":
        require(args.split in (None, "test", "train"), "LaSOT has no val split: use --split test")


def _emit(args, record: dict) -> None:
    if getattr(args, "out", None) is not None:
        from paperworks_shared.files import atomic_write_json

        atomic_write_json(Path(args.out) / RESULT_FILE, record)
    print(json.dumps(record))


def cmd_train(args, device):
    import torch

    from .io import save
    from .trackers import build_tracker
    from .train import evaluate, train

    pool, batches, test = _data(args, need_train=True)
    torch.manual_seed(args.seed)
    m = build_tracker(args.arch).to(device)
    losses = train(
        m,
        args.steps,
        pool,
        batch=args.batch,
        seed=args.seed,
        progress=not args.no_progress,
        desc=f"train {args.arch}",
        batches=batches,
        device=device,
    )
    out = Path(args.out) / MODEL_FILE
    save(m, out)
    _emit(args, {"saved": str(out), "final_loss": losses[-1], **evaluate(m, test, device)})


def cmd_prune(args, device):
    from .io import save
    from .pruner import Pruner
    from .train import evaluate, train

    require(
        args.threshold is None or args.method == "chipnet",
        "--threshold is only meaningful with --method chipnet (gates in [0, 1])",
    )
    pool, batches, test = _data(args, need_train=True)
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
    m.to(device)
    progress = not args.no_progress
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
            progress=progress,
            desc="search",
            batches=batches,
            device=device,
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
    before = evaluate(m, test, device)
    if args.finetune_steps:
        train(
            m,
            args.finetune_steps,
            pool,
            batch=args.batch,
            lr=1e-3,
            seed=args.seed + 1,
            progress=progress,
            desc="fine-tune",
            batches=batches,
            device=device,
        )
    out = Path(args.out) / MODEL_FILE
    save(m, out)
    extra = {"skipped": [str(x) for x in p.skipped], "emptied": list(p.emptied)}
    _emit(args, {"saved": str(out), "auc_before_ft": before["auc"], **evaluate(m, test, device), **extra})


def cmd_slim(args, device):
    from .cost import count_params
    from .io import save
    from .slim import slim

    m = _load(args.model)
    try:
        s = slim(m)
    except ValueError as e:
        raise UserError(f"{args.model}: {e}") from None
    out = Path(args.out) / MODEL_FILE
    save(s, out)
    _emit(args, {"saved": str(out), "params_masked": count_params(m), "params_slim": count_params(s)})


def cmd_evaluate(args, device):
    import time

    import numpy as np

    from .cost import cost_report
    from .train import evaluate, track_video

    _, _, test = _data(args, need_train=False)
    m = _load(args.model).to(device)
    x = _example(m)
    if args.data_root is not None and args.dataset == "got10k" and _eval_split(args) == "test":
        # the official protocol: track every frame from the first-frame box, write the predictions
        # in the submission layout; the scores come from the evaluation server
        require(args.out is not None, "GOT-10k test needs --out DIR (predictions for the evaluation server)")
        from .data import write_got10k_results

        preds, times = {}, {}
        for seq in test:
            t0 = time.perf_counter()
            preds[seq.name] = track_video(m, seq, device, progress=not args.no_progress)
            times[seq.name] = np.full(len(seq), (time.perf_counter() - t0) / len(seq))
        d = write_got10k_results(preds, times, Path(args.out) / "got10k-test")
        _emit(args, {"predictions": str(d), "sequences": len(preds), "frames": int(sum(map(len, test)))})
        return
    res = evaluate(m, test, device, progress=not args.no_progress)
    _emit(args, {**res, **cost_report(m.cpu(), x)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="{train,prune,slim,evaluate,bench}")
    t = sub.add_parser("train", help="train a tiny tracker from scratch (procedural data or --data-root)")
    t.add_argument("--arch", choices=["cnn", "vit", "hybrid"], default="vit")
    t.add_argument("--steps", type=positive_int, default=150)
    t.add_argument("--out", required=True, help="folder for model.pt and result.json")
    _common(t)
    t.set_defaults(fn=cmd_train)
    p = sub.add_parser("prune", help="sparsity search, threshold at a budget, apply masks, fine-tune")
    p.add_argument("--model", required=True, type=model_path, help="checkpoint file or folder with model.pt")
    p.add_argument("--out", required=True, help="folder for model.pt and result.json")
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
    s.add_argument("--model", required=True, type=model_path, help="checkpoint file or folder with model.pt")
    s.add_argument("--out", required=True, help="folder for model.pt and result.json")
    s.set_defaults(fn=cmd_slim)
    e = sub.add_parser(
        "evaluate", help="official success AUC / precision / AO / SR and params / FLOPs / latency"
    )
    e.add_argument("--model", required=True, type=model_path, help="checkpoint file or folder with model.pt")
    e.add_argument("--out", default=None, help="folder for result.json (GOT-10k test: the submission files)")
    _common(e, train=False)
    e.set_defaults(fn=cmd_evaluate)
    add_bench_command(sub, PROG)
    return parser


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    if args.cmd == "bench":
        check_out_dir(args.results, what="--results")
        return int(args.func(args) or 0)
    _check_data_args(args)
    if getattr(args, "out", None) is not None:  # before any loading or training
        check_out_dir(args.out)
    device = apply_runtime_args(args) if hasattr(args, "device") else None
    args.fn(args, device)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
