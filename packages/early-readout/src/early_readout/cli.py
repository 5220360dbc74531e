"""`early-readout` console script: train, analyze-readout, smoke.

early-readout smoke                         # SpuriousDigits: KD vs early readout vs controls, 1 seed
early-readout train --student mlp-tiny --epochs 60 --out run/       # distil and save the student
early-readout analyze-readout --student-ckpt run/student.pt          # readout mistakes vs groups
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _data_args(p: argparse.ArgumentParser) -> None:
    from .data import DATASETS

    p.add_argument(
        "--dataset", default="spurious-digits", choices=DATASETS, help="dataset (default: %(default)s)"
    )
    p.add_argument("--data-root", help="local folder of Waterbirds / CelebA (no downloads)")
    p.add_argument("--image-size", type=int, default=224, help="resize for waterbirds/celeba")
    p.add_argument("--train-correlation", type=float, default=0.95, help="P(a=y) in train (synthetic data)")
    p.add_argument(
        "--kind", default="patch", choices=("patch", "color", "stripe"), help="SpuriousDigits shortcut"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--student", default="mlp-tiny", help="built-in (mlp-tiny, cnn-small, ...) or a timm model name"
    )
    p.add_argument("--readout-layer", default="layer1", help="student module feeding the readout")
    p.add_argument("--readout-head", default="auto", choices=("auto", "basicblock", "linear", "mlp"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="early-readout",
        description="Early-readout-weighted knowledge distillation (DeDiER, arXiv 2310.18590): the examples "
        "an early readout of the student gets wrong are up-weighted in the KD loss.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser(
        "train", help="train/load a teacher, then distil into a student with early-readout weights"
    )
    _data_args(t)
    _model_args(t)
    t.add_argument(
        "--teacher", default="mlp-teacher", help="built-in or timm name of the teacher architecture"
    )
    t.add_argument("--teacher-ckpt", help="load teacher weights from this file instead of training one")
    t.add_argument("--teacher-method", default="erm", choices=("erm", "group_dro"))
    t.add_argument("--teacher-epochs", type=int, default=150)
    t.add_argument("--teacher-lr", type=float, default=0.05)
    t.add_argument(
        "--method",
        default="early_readout",
        choices=("kd", "early_readout", "random", "oracle"),
        help="weighting",
    )
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--lr", type=float, default=5e-3)
    t.add_argument("--weight-decay", type=float, default=1e-2)
    t.add_argument("--temperature", type=float, default=3.0)
    t.add_argument("--kd-alpha", type=float, default=1.0, help="KD share; 1 = pure KD (official)")
    t.add_argument("--weight-fn", default="exp_pow", choices=("exp_pow", "affine_exp"))
    t.add_argument("--alpha", type=float, help="formula alpha (default 0.05 exp_pow / 4 affine_exp)")
    t.add_argument("--beta", type=float, help="formula beta (default 4 exp_pow / 5 affine_exp)")
    t.add_argument("--normalize", default="batch", choices=("none", "batch", "global"))
    t.add_argument("--reweigh-every", type=int, default=1)
    t.add_argument("--max-weight", type=float)
    t.add_argument("--selector", default="val_wga", choices=("val_wga", "val_avg", "val_mean_group", "last"))
    t.add_argument(
        "--out", default="early-readout-run", help="output folder (student.pt, weights.pt, metrics)"
    )
    t.add_argument("--no-resume", action="store_true", help="ignore a checkpoint in --out")
    t.add_argument("--device", default=None)

    a = sub.add_parser(
        "analyze-readout", help="fit a fresh readout on a student and report its mistakes by group"
    )
    _data_args(a)
    _model_args(a)
    a.add_argument("--student-ckpt", help="student weights (from `train`); default: the untrained student")
    a.add_argument("--readout-epochs", type=int, default=1)
    a.add_argument("--readout-lr", type=float, default=5e-3)

    s = sub.add_parser("smoke", help="one-seed SpuriousDigits comparison of KD, early readout and controls")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--epochs", type=int, default=30)
    return p


def _loaders(args, splits):
    import torch
    from torch.utils.data import DataLoader

    from .batches import TensorLoader

    if isinstance(splits.train, torch.utils.data.TensorDataset):  # in-memory synthetic data: fast slices
        return (
            TensorLoader(splits.train, batch_size=args.batch_size, shuffle=True),
            TensorLoader(splits.validation, batch_size=256),
            TensorLoader(splits.test, batch_size=256),
        )
    return (
        DataLoader(splits.train, batch_size=args.batch_size, shuffle=True),
        DataLoader(splits.validation, batch_size=256),
        DataLoader(splits.test, batch_size=256),
    )


def cmd_train(args) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from paperworks_shared.repro import pick_device, seed_everything

    from .data import load_splits
    from .distill import EarlyReadoutDistiller
    from .experiment import group_balanced_weights
    from .models import build_model
    from .teacher import load_teacher, save_teacher, train_teacher

    device = pick_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = load_splits(
        args.dataset, args.seed, args.train_correlation, args.kind, args.data_root, args.image_size
    )
    train_dl, val_dl, test_dl = _loaders(args, splits)
    seed_everything(args.seed)
    teacher = build_model(args.teacher, splits.input_shape, splits.num_classes)
    if args.teacher_ckpt:
        load_teacher(teacher, args.teacher_ckpt)
    else:
        train_teacher(
            teacher,
            train_dl,
            args.teacher_epochs,
            args.teacher_method,
            lr=args.teacher_lr,
            n_groups=splits.n_groups,
            device=device,
        )
        save_teacher(teacher, out / "teacher.pt", {"arch": args.teacher, "method": args.teacher_method})
    student = build_model(args.student, splits.input_shape, splits.num_classes)
    d = EarlyReadoutDistiller(
        teacher,
        student,
        splits.num_classes,
        len(splits.train),
        readout_layer=args.readout_layer,
        readout_head=args.readout_head,
        temperature=args.temperature,
        kd_alpha=args.kd_alpha,
        weight_fn=args.weight_fn,
        alpha=args.alpha,
        beta=args.beta,
        normalize=args.normalize,
        reweigh_every=args.reweigh_every if args.method in ("early_readout", "random") else 0,
        control="random" if args.method == "random" else None,
        max_weight=args.max_weight,
        device=device,
        seed=args.seed,
    )
    d.cache_teacher_logits(DataLoader(splits.train, batch_size=256))
    if args.method == "oracle":
        d.set_weights(group_balanced_weights(splits.train_groups, splits.n_groups))
    hist = d.fit(
        train_dl,
        args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        val_loader=val_dl,
        selector=args.selector,
        n_groups=splits.n_groups,
        checkpoint_dir=out / "ckpt",
        resume=not args.no_resume,
    )
    test = d.evaluate(test_dl, splits.n_groups)
    torch.save(d.student.state_dict(), out / "student.pt")
    d.save_weights(out / "weights.pt")
    res = {"best_epoch": hist.best_epoch, **{f"test_{k}": v for k, v in test.items()}}
    (out / "metrics.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return res


def cmd_analyze(args) -> dict:
    import torch

    from .analysis import minority_groups, readout_analysis
    from .data import load_splits
    from .distill import EarlyReadoutDistiller
    from .models import build_model

    splits = load_splits(
        args.dataset, args.seed, args.train_correlation, args.kind, args.data_root, args.image_size
    )
    train_dl, _, _ = _loaders(args, splits)
    torch.manual_seed(args.seed)
    student = build_model(args.student, splits.input_shape, splits.num_classes)
    if args.student_ckpt:
        student.load_state_dict(torch.load(args.student_ckpt, map_location="cpu", weights_only=True))
    n = len(splits.train)
    d = EarlyReadoutDistiller(
        torch.zeros(n, splits.num_classes),
        student,
        splits.num_classes,
        n,
        readout_layer=args.readout_layer,
        readout_head=args.readout_head,
        readout_epochs=args.readout_epochs,
        readout_lr=args.readout_lr,
        readout_weight_decay=0.0,
    )
    d.train_readout(train_dl, progress=True)
    pred = d.readout_predictions(train_dl)
    groups = splits.train_groups
    res = readout_analysis(pred["wrong"], groups, minority_groups(groups, splits.n_groups), pred["margin"])
    print(json.dumps(res, indent=1))
    return res


def cmd_smoke(args) -> list[dict]:
    from paperworks_shared.bench import markdown_table

    from .data import load_splits
    from .experiment import METHODS, Settings, run_method

    s = Settings(epochs=args.epochs)
    splits = load_splits(s.dataset, seed=args.seed, train_correlation=s.train_correlation, kind=s.kind)
    rows = []
    for m in METHODS:
        r = run_method(m, args.seed, s, splits)
        rows.append(
            {k: r.get(k, "") for k in ("method", "test_avg", "test_wga", "readout_minority_share_first")}
        )
    print(markdown_table(rows))
    return rows


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    {"train": cmd_train, "analyze-readout": cmd_analyze, "smoke": cmd_smoke}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
