"""`metadock` console script: train, evaluate, export, bench.

Follows the paperworks CLI convention (`paperworks_shared.cli`): every argument is range-checked at
parse time, output locations are probed and checkpoints loaded before any work, and user mistakes
end with one line `metadock: error: ...` and exit code 2 (`--debug` shows the traceback).
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
    existing_dir,
    fraction,
    int_range,
    nonneg_int,
    positive_float,
    positive_int,
    require,
    run_cli,
)
from paperworks_shared.files import atomic_write_json, strict_json

DATASETS = ["glyphs", "digits", "cifar-fs", "mini-imagenet"]
COMPACT_FILE = "compact.pt"  # what `metadock export --out DIR` writes inside DIR
DIGITS_CLASSES = 38  # 10 digits x 4 rotations, minus the 180-degree 6 and 9


def _dataset(args):
    from . import data

    if args.data == "glyphs":
        ds = data.glyphs(sum(args.classes), args.per_class, args.img, seed=args.seed)
        return data.class_split(ds, *args.classes, seed=args.seed), 1
    if args.data == "digits":
        ds = data.sklearn_digits(size=args.img)
        return data.class_split(ds, *args.classes, seed=args.seed), 1
    loader = data.load_cifar_fs if args.data == "cifar-fs" else data.load_mini_imagenet
    return loader(args.path, size=args.img), 3


def _check_data_args(args) -> None:
    """Cross-argument checks of the data options (before anything is built)."""
    require(
        args.data in ("glyphs", "digits") or args.path is not None,
        f"--data {args.data} needs --data-root (the local dataset folder)",
    )
    if args.data == "digits":
        require(
            sum(args.classes) <= DIGITS_CLASSES,
            f"--classes {' '.join(map(str, args.classes))}: --data digits has only {DIGITS_CLASSES} "
            "classes in all (try --classes 22 8 8)",
        )
    if args.data in ("cifar-fs", "mini-imagenet"):
        return  # class counts come from the folder's split files
    require(
        args.ways <= min(args.classes),
        f"--ways {args.ways} exceeds the smallest class split (--classes {' '.join(map(str, args.classes))})",
    )
    if args.data == "glyphs":
        require(
            args.per_class >= args.shots + args.query,
            f"--per-class {args.per_class} is smaller than --shots + --query = {args.shots + args.query}",
        )


def _pools(args):
    from .tasks import ClassPool

    try:
        splits, channels = _dataset(args)
        return {k: ClassPool.from_dataset(v) for k, v in splits.items()}, channels
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--data {args.data}: {e}") from None


def _data_args(p, *, from_checkpoint: bool = False):
    ck = " (default: the checkpoint's)" if from_checkpoint else ""
    p.add_argument(
        "--data",
        choices=DATASETS,
        default="glyphs",
        help="procedural glyphs (default), rotated sklearn digits, or a local CIFAR-FS / mini-ImageNet folder",
    )
    p.add_argument(
        "--data-root",
        "--path",
        dest="path",
        type=existing_dir,
        help="dataset folder for cifar-fs / mini-imagenet (--path is an old alias)",
    )
    p.add_argument(
        "--img",
        type=int_range(8, 512),
        default=None if from_checkpoint else 28,
        help=f"image side in pixels, 8..512 (default 28){ck}",
    )
    p.add_argument(
        "--classes",
        type=positive_int,
        nargs=3,
        default=[64, 16, 20],
        metavar=("TRAIN", "VAL", "TEST"),
        help="glyphs/digits: classes per meta-split (default 64 16 20)",
    )
    p.add_argument("--per-class", type=int_range(1, 100_000), default=20, help="glyphs: images per class")
    p.add_argument(
        "--ways",
        type=int_range(2, 1000),
        default=None if from_checkpoint else 5,
        help=f"classes per task (default 5){ck}",
    )
    p.add_argument("--shots", type=int_range(1, 10_000), default=1)
    p.add_argument("--query", type=int_range(1, 10_000), default=15)
    p.add_argument("--seed", type=nonneg_int, default=0)
    add_runtime_args(p)
    add_debug_flag(p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="metadock",
        description="MetaDOCK: meta-learn a conv net whose every task keeps "
        "only a budgeted fraction of its 3x3 kernels (per-task dynamic kernel selection).",
    )
    add_debug_flag(p)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser(
        "train", help="meta-train Conv4 with MetaDOCK (iMAML by default); model selection on meta-val"
    )
    _data_args(t)
    t.add_argument(
        "--width", type=int_range(1, 4096), default=64, help="Conv4 filters per layer (default 64)"
    )
    t.add_argument(
        "--budget", type=fraction, default=0.25, help="fraction of kernels each task keeps, in (0, 1]"
    )
    t.add_argument("--algo", choices=["imaml", "maml"], default="imaml")
    t.add_argument(
        "--mode",
        choices=["faithful", "exact"],
        default="faithful",
        help="iMAML: official damped operator or true iMAML (CG to tolerance)",
    )
    t.add_argument("--first-order", action="store_true", help="MAML: first-order")
    t.add_argument("--backend", choices=["torch.func", "higher"], default="torch.func")
    t.add_argument(
        "--pretrain-steps", type=nonneg_int, default=200, help="dense meta-training steps before pruning"
    )
    t.add_argument("--steps", type=positive_int, default=500, help="MetaDOCK meta-training steps")
    t.add_argument("--inner-steps", type=nonneg_int, default=5)
    t.add_argument("--inner-lr", type=positive_float, default=0.1)
    t.add_argument("--outer-lr", type=positive_float, default=1e-3)
    t.add_argument("--meta-batch", type=positive_int, default=4)
    t.add_argument("--val-tasks", type=positive_int, default=50)
    t.add_argument("--val-every", type=nonneg_int, default=100, help="0: no meta-validation")
    t.add_argument(
        "--out",
        required=True,
        help="output folder: receives checkpoint.pt (written atomically; other files are left alone)",
    )

    e = sub.add_parser(
        "evaluate", help="accuracy +- 95%% CI and active kernel fraction on fixed meta-test tasks"
    )
    e.add_argument("checkpoint", help="checkpoint folder written by `metadock train`")
    _data_args(e, from_checkpoint=True)
    e.add_argument("--tasks", type=int_range(1, 100_000), default=600)
    e.add_argument("--inner-steps", type=nonneg_int, default=5)
    e.add_argument("--inner-lr", type=positive_float, default=0.1)

    x = sub.add_parser(
        "export", help="adapt to one meta-test task and save its compact model (pruned kernels removed)"
    )
    x.add_argument("checkpoint", help="checkpoint folder written by `metadock train`")
    _data_args(x, from_checkpoint=True)
    x.add_argument("--task-index", type=int_range(0, 100_000), default=0)
    x.add_argument("--inner-steps", type=nonneg_int, default=5)
    x.add_argument("--inner-lr", type=positive_float, default=0.1)
    x.add_argument(
        "--out",
        required=True,
        help=f"output folder: writes {COMPACT_FILE} (state dict + architecture config, load with "
        "metadock.export.load_compact) and export.json",
    )

    b = add_bench_command(sub, "metadock")
    add_debug_flag(b)
    return p


def _load_checkpoint(args):
    from .checkpoint import CheckpointError, load

    try:
        dock, cfg = load(args.checkpoint)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    net = cfg["net"]
    for opt, key, have in (("--img", "img_size", args.img), ("--ways", "n_way", args.ways)):
        if have is None:
            setattr(args, opt[2:], net[key])
        else:
            require(
                have == net[key],
                f"{opt} {have} does not match the checkpoint {args.checkpoint} ({key} = {net[key]})",
            )
    return dock, cfg


def _train(args) -> int:
    import torch

    from .checkpoint import CheckpointError, check_replaceable, save
    from .dock import MetaDOCK
    from .models import Conv4
    from .tasks import TaskSampler, fixed_tasks
    from .trainers import IMAMLTrainer, MAMLTrainer

    try:
        check_replaceable(args.out)
    except CheckpointError as e:
        raise UserError(f"--out {e}") from None
    device = apply_runtime_args(args)
    out = check_out_dir(args.out)  # the folder that receives checkpoint.pt
    pools, channels = _pools(args)
    try:
        sampler = TaskSampler(pools["train"], args.ways, args.shots, args.query, seed=args.seed)
        val = fixed_tasks(pools["validation"], args.val_tasks, args.ways, args.shots, args.query, seed=7)
    except ValueError as e:
        raise UserError(str(e)) from None
    torch.manual_seed(args.seed)
    dock = MetaDOCK(Conv4(channels, args.ways, args.width, args.img), budget=args.budget).to(device)
    progress = not args.no_progress
    common = dict(
        inner_lr=args.inner_lr,
        inner_steps=args.inner_steps,
        outer_lr=args.outer_lr,
        meta_batch=args.meta_batch,
    )
    try:
        if args.pretrain_steps:
            IMAMLTrainer(dock, dense=True, **common).fit(sampler, args.pretrain_steps, progress=progress)
        tr: IMAMLTrainer | MAMLTrainer
        if args.algo == "imaml":
            tr = IMAMLTrainer(dock, mode=args.mode, backend=args.backend, **common)
        else:
            tr = MAMLTrainer(dock, first_order=args.first_order, backend=args.backend, **common)
        hist = tr.fit(sampler, args.steps, val_tasks=val, val_every=args.val_every, progress=progress)
    except ArithmeticError as e:  # divergence (non-finite loss) or a CG breakdown: nothing is saved
        raise UserError(f"training failed, nothing was saved: {e}") from None
    save(dock, out, {"data": args.data, "img": args.img, "ways": args.ways, "shots": args.shots})
    print(strict_json({"saved": str(out), "device": str(device), "last": hist[-1] if hist else None}))
    return 0


def _evaluate_or_export(args) -> int:
    from .export import count, save_compact
    from .tasks import fixed_tasks
    from .trainers import IMAMLTrainer

    dock, _cfg = _load_checkpoint(args)
    device = apply_runtime_args(args)
    if args.cmd == "export":  # created only once the checkpoint and the device are known to be good
        out_dir = check_out_dir(args.out)
        out = out_dir / COMPACT_FILE
    dock.to(device)
    _check_data_args(args)
    pools, channels = _pools(args)
    require(
        channels == _cfg["net"]["in_channels"],
        f"--data {args.data} has {channels} image channel(s) but the checkpoint expects "
        f"{_cfg['net']['in_channels']}",
    )
    try:
        tasks = fixed_tasks(
            pools["test"],
            args.tasks if args.cmd == "evaluate" else args.task_index + 1,
            args.ways,
            args.shots,
            args.query,
            seed=123,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    tr = IMAMLTrainer(dock, inner_lr=args.inner_lr, inner_steps=args.inner_steps)
    if args.cmd == "evaluate":
        res = tr.evaluate(tasks, progress=not args.no_progress).as_dict()
        print(strict_json({**res, "tasks": len(tasks), "device": str(device)}))
        return 0
    adapted = tr.adapt(tasks[args.task_index].to(device))
    compact = adapted.export().cpu()
    save_compact(compact, out, {"task_index": args.task_index, "remaining": adapted.remaining()})
    summary = {
        "saved": str(out),
        "remaining": adapted.remaining(),
        **count(compact, (channels, args.img, args.img)),
    }
    atomic_write_json(out_dir / "export.json", summary)
    print(strict_json(summary))
    return 0


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "bench":
        check_out_dir(args.results, what="--results")
        return int(args.func(args) or 0)
    if args.cmd == "train":
        _check_data_args(args)
        return _train(args)
    return _evaluate_or_export(args)


def main(argv=None) -> int:
    return run_cli(_main, argv, prog="metadock")


if __name__ == "__main__":
    sys.exit(main())
