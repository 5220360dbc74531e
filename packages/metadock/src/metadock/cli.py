"""`metadock` console script: train, evaluate, export, bench."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from . import checkpoint, data
from .dock import MetaDOCK
from .export import count
from .models import Conv4
from .tasks import ClassPool, TaskSampler, fixed_tasks
from .trainers import IMAMLTrainer, MAMLTrainer


def _dataset(args):
    if args.data == "glyphs":
        ds = data.glyphs(sum(args.classes), args.per_class, args.img, seed=args.seed)
        return data.class_split(ds, *args.classes, seed=args.seed), 1
    if args.data == "digits":
        ds = data.sklearn_digits(size=args.img)
        return data.class_split(ds, *args.classes, seed=args.seed), 1
    if not args.path:
        raise SystemExit(f"--data {args.data} needs --path to the local dataset folder")
    loader = data.load_cifar_fs if args.data == "cifar-fs" else data.load_mini_imagenet
    return loader(args.path, size=args.img), 3


def _data_args(p):
    p.add_argument(
        "--data",
        choices=["glyphs", "digits", "cifar-fs", "mini-imagenet"],
        default="glyphs",
        help="procedural glyphs (default), rotated sklearn digits, or a local CIFAR-FS / mini-ImageNet folder",
    )
    p.add_argument("--path", help="dataset folder for cifar-fs / mini-imagenet")
    p.add_argument("--img", type=int, default=28, help="image side in pixels (default 28)")
    p.add_argument(
        "--classes",
        type=int,
        nargs=3,
        default=[64, 16, 20],
        metavar=("TRAIN", "VAL", "TEST"),
        help="glyphs/digits: classes per meta-split (default 64 16 20)",
    )
    p.add_argument("--per-class", type=int, default=20, help="glyphs: images per class")
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="metadock",
        description="MetaDOCK: meta-learn a conv net whose every task keeps "
        "only a budgeted fraction of its 3x3 kernels (per-task dynamic kernel selection).",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser(
        "train", help="meta-train Conv4 with MetaDOCK (iMAML by default); model selection on meta-val"
    )
    _data_args(t)
    t.add_argument("--width", type=int, default=64, help="Conv4 filters per layer (default 64)")
    t.add_argument(
        "--budget", type=float, default=0.25, help="fraction of kernels each task keeps, in (0, 1]"
    )
    t.add_argument("--algo", choices=["imaml", "maml"], default="imaml")
    t.add_argument(
        "--mode",
        choices=["faithful", "exact"],
        default="faithful",
        help="iMAML: official damped operator or true iMAML",
    )
    t.add_argument("--first-order", action="store_true", help="MAML: first-order")
    t.add_argument("--backend", choices=["torch.func", "higher"], default="torch.func")
    t.add_argument("--pretrain-steps", type=int, default=200, help="dense meta-training steps before pruning")
    t.add_argument("--steps", type=int, default=500, help="MetaDOCK meta-training steps")
    t.add_argument("--inner-steps", type=int, default=5)
    t.add_argument("--inner-lr", type=float, default=0.1)
    t.add_argument("--outer-lr", type=float, default=1e-3)
    t.add_argument("--meta-batch", type=int, default=4)
    t.add_argument("--val-tasks", type=int, default=50)
    t.add_argument("--val-every", type=int, default=100)
    t.add_argument("--out", required=True, help="checkpoint folder (config.json + model.pt)")

    e = sub.add_parser(
        "evaluate", help="accuracy +- 95%% CI and active kernel fraction on fixed meta-test tasks"
    )
    e.add_argument("checkpoint")
    _data_args(e)
    e.add_argument("--tasks", type=int, default=600)
    e.add_argument("--inner-steps", type=int, default=5)
    e.add_argument("--inner-lr", type=float, default=0.1)

    x = sub.add_parser(
        "export", help="adapt to one meta-test task and save its compact model (pruned kernels removed)"
    )
    x.add_argument("checkpoint")
    _data_args(x)
    x.add_argument("--task-index", type=int, default=0)
    x.add_argument("--inner-steps", type=int, default=5)
    x.add_argument("--inner-lr", type=float, default=0.1)
    x.add_argument("--out", required=True, help="output .pt file (torch.save of the compact nn.Module)")

    b = sub.add_parser("bench", help="run this package's benchmark (same as make bench PKG=metadock)")
    b.add_argument("--scale", choices=["smoke", "cpu", "gpu"], default="cpu")
    b.add_argument("--results", default="benchmarks/results")

    args = p.parse_args(argv)
    if args.cmd == "bench":
        from paperworks_shared.bench import main as bench_main

        return bench_main(["--scale", args.scale, "--package", "metadock", "--results", args.results])
    splits, channels = _dataset(args)
    pools = {k: ClassPool.from_dataset(v) for k, v in splits.items()}
    if args.cmd == "train":
        torch.manual_seed(args.seed)
        dock = MetaDOCK(Conv4(channels, args.ways, args.width, args.img), budget=args.budget)
        sampler = TaskSampler(pools["train"], args.ways, args.shots, args.query, seed=args.seed)
        val = fixed_tasks(pools["validation"], args.val_tasks, args.ways, args.shots, args.query, seed=7)
        common = dict(
            inner_lr=args.inner_lr,
            inner_steps=args.inner_steps,
            outer_lr=args.outer_lr,
            meta_batch=args.meta_batch,
        )
        if args.pretrain_steps:
            IMAMLTrainer(dock, dense=True, **common).fit(sampler, args.pretrain_steps)
        if args.algo == "imaml":
            tr = IMAMLTrainer(dock, mode=args.mode, backend=args.backend, **common)
        else:
            tr = MAMLTrainer(dock, first_order=args.first_order, backend=args.backend, **common)
        hist = tr.fit(sampler, args.steps, val_tasks=val, val_every=args.val_every)
        checkpoint.save(
            dock, args.out, {"data": args.data, "img": args.img, "ways": args.ways, "shots": args.shots}
        )
        print(json.dumps({"saved": args.out, "last": hist[-1] if hist else None}))
        return 0
    dock, _ = checkpoint.load(args.checkpoint)
    tasks = fixed_tasks(
        pools["test"],
        args.tasks if args.cmd == "evaluate" else args.task_index + 1,
        args.ways,
        args.shots,
        args.query,
        seed=123,
    )
    tr = IMAMLTrainer(dock, inner_lr=args.inner_lr, inner_steps=args.inner_steps)
    if args.cmd == "evaluate":
        print(json.dumps(tr.evaluate(tasks).as_dict(), indent=1))
        return 0
    adapted = tr.adapt(tasks[args.task_index])
    compact = adapted.export()
    torch.save(compact, args.out)
    print(
        json.dumps(
            {
                "saved": args.out,
                "remaining": adapted.remaining(),
                **count(compact, (channels, args.img, args.img)),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
