"""`early-readout` console script: train, analyze-readout, smoke.

early-readout smoke                         # SpuriousDigits: KD vs early readout vs controls, 1 seed
early-readout train --student mlp-tiny --epochs 60 --out run/       # distil and save the student
early-readout analyze-readout --student-ckpt run/student.pt          # readout mistakes vs groups

Errors follow the paperworks convention (`paperworks_shared.cli`): a bad argument, a missing or corrupt
checkpoint, an unwritable --out or an unknown readout layer is one line on stderr and exit code 2,
found before any training; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from paperworks_shared.cli import (
    UserError,
    add_bench_command,
    add_debug_flag,
    add_runtime_args,
    apply_runtime_args,
    check_out_dir,
    existing_dir,
    existing_file,
    float_range,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
    require,
    run_cli,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATASETS = ("spurious-digits", "digit-dominoes", "waterbirds", "celeba")  # = data.DATASETS (no torch import)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default="spurious-digits", choices=DATASETS, help="dataset (default: %(default)s)"
    )
    p.add_argument(
        "--data-root", type=existing_dir, help="local folder of Waterbirds / CelebA (no downloads)"
    )
    p.add_argument("--image-size", type=positive_int, default=224, help="resize for waterbirds/celeba")
    p.add_argument(
        "--train-correlation", type=probability, default=0.95, help="P(a=y) in train (synthetic data)"
    )
    p.add_argument(
        "--kind", default="patch", choices=("patch", "color", "stripe"), help="SpuriousDigits shortcut"
    )
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument(
        "--workers", type=nonneg_int, default=0, help="DataLoader worker processes for image datasets"
    )
    add_runtime_args(p)
    add_debug_flag(p)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--student", default="mlp-tiny", help="built-in (mlp-tiny, cnn-small, ...) or a timm model name"
    )
    p.add_argument("--readout-layer", default="layer1", help="student module feeding the readout")
    p.add_argument("--readout-head", default="auto", choices=("auto", "basicblock", "linear", "mlp"))
    p.add_argument(
        "--pretrained",
        type=existing_file,
        help="local backbone weights for the student (timm/torchvision .pth or .safetensors; no downloads)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="early-readout",
        description="Early-readout-weighted knowledge distillation (DeDiER, arXiv 2310.18590): the examples "
        "an early readout of the student gets wrong are up-weighted in the KD loss.",
    )
    add_debug_flag(p)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser(
        "train", help="train/load a teacher, then distil into a student with early-readout weights"
    )
    _data_args(t)
    _model_args(t)
    t.add_argument(
        "--teacher", default="mlp-teacher", help="built-in or timm name of the teacher architecture"
    )
    t.add_argument(
        "--teacher-ckpt",
        type=existing_file,
        help="load teacher weights from this file instead of training one",
    )
    t.add_argument(
        "--teacher-pretrained",
        type=existing_file,
        help="local backbone weights to start the teacher from (before its training)",
    )
    t.add_argument("--teacher-method", default="erm", choices=("erm", "group_dro"))
    t.add_argument("--teacher-epochs", type=positive_int, default=150)
    t.add_argument("--teacher-lr", type=positive_float, default=0.05)
    t.add_argument(
        "--method",
        default="early_readout",
        choices=("kd", "early_readout", "random", "oracle"),
        help="weighting",
    )
    t.add_argument("--epochs", type=positive_int, default=60)
    t.add_argument("--lr", type=positive_float, default=5e-3)
    t.add_argument("--weight-decay", type=nonneg_float, default=1e-2)
    t.add_argument("--temperature", type=positive_float, default=3.0)
    t.add_argument("--kd-alpha", type=probability, default=1.0, help="KD share; 1 = pure KD (official)")
    t.add_argument("--weight-fn", default="exp_pow", choices=("exp_pow", "affine_exp"))
    t.add_argument("--alpha", type=positive_float, help="formula alpha (default 0.05 exp_pow / 4 affine_exp)")
    t.add_argument("--beta", type=nonneg_float, help="formula beta (default 4 exp_pow / 5 affine_exp)")
    t.add_argument("--normalize", default="batch", choices=("none", "batch", "global"))
    t.add_argument("--reweigh-every", type=nonneg_int, default=1, help="epochs between refreshes (0 = never)")
    t.add_argument("--max-weight", type=float_range(1.0), help="cap on a weight (>= 1)")
    t.add_argument("--selector", default="val_wga", choices=("val_wga", "val_avg", "val_mean_group", "last"))
    t.add_argument(
        "--out", default="early-readout-run", help="output folder (student.pt, weights.pt, metrics)"
    )
    t.add_argument("--no-resume", action="store_true", help="ignore a checkpoint in --out")

    a = sub.add_parser(
        "analyze-readout", help="fit a fresh readout on a student and report its mistakes by group"
    )
    _data_args(a)
    _model_args(a)
    a.add_argument(
        "--student-ckpt",
        type=existing_file,
        help="student weights (from `train`); default: the untrained student",
    )
    a.add_argument("--readout-epochs", type=positive_int, default=1)
    a.add_argument("--readout-lr", type=positive_float, default=5e-3)

    s = sub.add_parser("smoke", help="one-seed SpuriousDigits comparison of KD, early readout and controls")
    s.add_argument("--seed", type=nonneg_int, default=0)
    s.add_argument("--epochs", type=positive_int, default=30)
    add_runtime_args(s)
    add_debug_flag(s)
    add_bench_command(sub, "early-readout")
    return p


def _splits(args):
    from .data import load_splits

    if args.dataset in ("waterbirds", "celeba"):
        require(
            args.data_root is not None,
            f"--dataset {args.dataset} needs --data-root (a local copy; no downloads)",
        )
    try:
        return load_splits(
            args.dataset, args.seed, args.train_correlation, args.kind, args.data_root, args.image_size
        )
    except (ValueError, KeyError) as e:
        raise UserError(f"cannot load --dataset {args.dataset}: {_line(e)}") from e


def _line(e: BaseException) -> str:
    from .errors import first_line

    return first_line(e).strip("'\"")


def _model(name: str, splits, what: str, pretrained=None):
    from .models import build_model

    try:
        model = build_model(name, splits.input_shape, splits.num_classes)
    except (ValueError, RuntimeError, TypeError) as e:
        raise UserError(f"--{what} {name!r}: {_line(e)}") from e
    if pretrained is not None:
        from .models import load_pretrained

        flag = "--pretrained" if what == "student" else f"--{what}-pretrained"
        try:
            load_pretrained(model, pretrained)
        except (ValueError, RuntimeError, KeyError) as e:
            raise UserError(f"{flag}: {_line(e)}") from None
    return model


def _check_readout_layer(student, layer: str) -> None:
    from .taps import find_module

    try:
        find_module(student, layer)
    except KeyError as e:
        raise UserError(f"--readout-layer: {_line(e)}") from None


def _loaders(args, splits, device=None):
    """(train, validation, test, train-in-order) loaders: fast in-memory slices for the synthetic data,
    DataLoaders with ``--workers`` processes (images decoded on access) for the image datasets."""
    import torch
    from torch.utils.data import DataLoader

    from .batches import TensorLoader

    if isinstance(splits.train, torch.utils.data.TensorDataset):  # in-memory synthetic data: fast slices
        return (
            TensorLoader(splits.train, batch_size=args.batch_size, shuffle=True),
            TensorLoader(splits.validation, batch_size=256),
            TensorLoader(splits.test, batch_size=256),
            TensorLoader(splits.train, batch_size=256),
        )
    kw = {
        "num_workers": args.workers,
        "pin_memory": device is not None and device.type == "cuda",
        "persistent_workers": args.workers > 0,
    }
    eval_bs = max(args.batch_size, 64)
    return (
        DataLoader(splits.train, batch_size=args.batch_size, shuffle=True, **kw),
        DataLoader(splits.validation, batch_size=eval_bs, **kw),
        DataLoader(splits.test, batch_size=eval_bs, **kw),
        DataLoader(splits.train, batch_size=eval_bs, **kw),
    )


def cmd_train(args, device) -> dict:
    import torch

    from paperworks_shared.checkpoint import save_checkpoint
    from paperworks_shared.files import atomic_write_json
    from paperworks_shared.repro import seed_everything

    from .distill import EarlyReadoutDistiller
    from .errors import CheckpointError
    from .experiment import group_balanced_weights
    from .teacher import load_teacher, save_teacher, train_teacher

    # everything the user gave is checked before any training: output folder, data, models, layer, files
    out = check_out_dir(args.out)
    splits = _splits(args)
    seed_everything(args.seed)
    teacher = _model(args.teacher, splits, "teacher", args.teacher_pretrained)
    student = _model(args.student, splits, "student", args.pretrained)
    _check_readout_layer(student, args.readout_layer)
    if args.teacher_ckpt:
        try:
            load_teacher(teacher, args.teacher_ckpt)
        except CheckpointError as e:
            raise UserError(f"--teacher-ckpt: {_line(e)}") from None
    ckpt = out / "ckpt" / "last.pt"
    if ckpt.exists() and not args.no_resume:
        from .distill import load_checkpoint

        try:
            load_checkpoint(ckpt)
        except CheckpointError as e:
            raise UserError(f"{_line(e)} (or pass --no-resume)") from None
    train_dl, val_dl, test_dl, train_eval_dl = _loaders(args, splits, device)
    progress = not args.no_progress
    if not args.teacher_ckpt:
        train_teacher(
            teacher,
            train_dl,
            args.teacher_epochs,
            args.teacher_method,
            lr=args.teacher_lr,
            n_groups=splits.n_groups,
            device=device,
            progress=progress,
        )
        save_teacher(teacher, out / "teacher.pt", {"arch": args.teacher, "method": args.teacher_method})
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
    d.cache_teacher_logits(train_eval_dl, progress=progress)
    train_groups = splits.train_groups
    if args.method == "oracle":
        d.set_weights(group_balanced_weights(train_groups, splits.n_groups))
    counts = torch.bincount(train_groups.long(), minlength=splits.n_groups)
    try:
        hist = d.fit(
            train_dl,
            args.epochs,
            lr=args.lr,
            weight_decay=args.weight_decay,
            val_loader=val_dl,
            selector=args.selector,
            n_groups=splits.n_groups,
            train_group_counts=counts,
            checkpoint_dir=out / "ckpt",
            resume=not args.no_resume,
            progress=progress,
        )
    except CheckpointError as e:
        raise UserError(f"{_line(e)} (or pass --no-resume)") from None
    test = d.evaluate(test_dl, splits.n_groups, counts)
    save_checkpoint(
        out / "student.pt", d.student.state_dict(), kind=STUDENT_KIND, meta={"arch": args.student}
    )
    d.save_weights(out / "weights.pt")
    res = {
        "best_epoch": hist.best_epoch,
        "train_group_counts": counts.tolist(),
        **{f"test_{k}": v for k, v in test.items()},
    }
    atomic_write_json(out / "metrics.json", res)
    print(json.dumps(res, indent=1))
    return res


def cmd_analyze(args, device) -> dict:
    import torch

    from .analysis import minority_groups, readout_analysis
    from .distill import EarlyReadoutDistiller

    splits = _splits(args)
    torch.manual_seed(args.seed)
    student = _model(args.student, splits, "student", args.pretrained)
    _check_readout_layer(student, args.readout_layer)
    if args.student_ckpt:
        _load_student(student, args.student_ckpt)
    train_dl, _, _, train_eval_dl = _loaders(args, splits, device)
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
        device=device,
    )
    d.train_readout(train_dl, progress=not args.no_progress)
    pred = d.readout_predictions(train_eval_dl)
    groups = splits.train_groups
    res = readout_analysis(pred["wrong"], groups, minority_groups(groups, splits.n_groups), pred["margin"])
    print(json.dumps(res, indent=1))
    return res


STUDENT_KIND = "early-readout-student"


def _load_student(student, path) -> None:
    """Student weights from `train` (a paperworks checkpoint of kind early-readout-student, read with
    weights_only=True); UserError naming the path if it is missing, corrupt, of another kind or does not fit."""
    from .errors import CheckpointError, read_checkpoint

    try:
        state, _ = read_checkpoint(path, kind=STUDENT_KIND)
    except CheckpointError as e:
        raise UserError(f"--student-ckpt: {_line(e)}") from None
    try:
        student.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(
            f"--student-ckpt {str(path)!r} does not fit --student {type(student).__name__}: {_line(e)}"
        ) from None


def cmd_smoke(args, device) -> list[dict]:
    from paperworks_shared.bench import markdown_table

    from .data import load_splits
    from .experiment import METHODS, Settings, run_method

    s = Settings(epochs=args.epochs)
    splits = load_splits(s.dataset, seed=args.seed, train_correlation=s.train_correlation, kind=s.kind)
    rows = []
    for m in METHODS:
        r = run_method(m, args.seed, s, splits, progress=not args.no_progress, device=device)
        rows.append(
            {
                k: r.get(k, "")
                for k in ("method", "test_avg", "test_worst_group_acc", "readout_minority_share_first")
            }
        )
    print(markdown_table(rows))
    return rows


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "bench":
        return int(args.func(args) or 0)
    device = apply_runtime_args(args)  # --threads, --device (a UserError before any work if unusable)
    {"train": cmd_train, "analyze-readout": cmd_analyze, "smoke": cmd_smoke}[args.cmd](args, device)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog="early-readout")


if __name__ == "__main__":
    sys.exit(main())
