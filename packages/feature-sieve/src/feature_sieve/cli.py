"""`feature-sieve` console script: train / evaluate / smoke.

Errors follow the paperworks convention (`paperworks_shared.cli`): a bad argument, an unwritable
--out, an unknown sieve layer or model, a missing or corrupt checkpoint/model file is one line on
stderr and exit code 2, found before any training; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from paperworks_shared.cli import (
    UserError,
    add_bench_command,
    add_debug_flag,
    add_runtime_args,
    apply_runtime_args,
    check_out_dir,
    choice_of,
    existing_dir,
    existing_file,
    float_range,
    list_of,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
    require,
    run_cli,
)

METHODS = ("sieve", "erm", "group_dro", "jtt", "wrong_sign")
# = feature_sieve.data.DATASETS / train.SELECTORS, spelled here so that --help does not import torch
DATASETS = ("spurious_digits", "spurious_digits_color", "digit_dominoes", "waterbirds", "celeba")
SELECTORS = ("val_mean_group", "val_wga", "val_avg", "last")
momentum_type = float_range(0.0, 1.0, hi_open=True)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", choices=DATASETS, default="spurious_digits_color", help="dataset (default: %(default)s)"
    )
    p.add_argument(
        "--data-root",
        "--root",
        dest="data_root",
        type=existing_dir,
        help="local folder for waterbirds / celeba (metadata + images; no downloads). --root is an alias",
    )
    p.add_argument(
        "--workers",
        type=nonneg_int,
        default=0,
        help="DataLoader worker processes for image datasets (default: %(default)s = in the main process)",
    )
    p.add_argument(
        "--train-correlation", type=probability, help="toy data: P(shortcut = label) in training, in [0, 1]"
    )
    p.add_argument(
        "--image-size", type=positive_int, default=224, help="waterbirds/celeba resize (default: %(default)s)"
    )
    p.add_argument(
        "--seed",
        type=nonneg_int,
        default=0,
        help="data split / init / batch-order seed (default: %(default)s)",
    )
    p.add_argument("--model", default="small_cnn", help="'small_cnn' or a timm model name")
    p.add_argument(
        "--pretrained",
        type=existing_file,
        help="initialise --model from a local timm/torchvision checkpoint (.pth/.pt/.bin) or .safetensors "
        "file (no downloads; the classifier is re-initialised when its shape differs)",
    )
    p.add_argument("--width", type=positive_int, default=8, help="small_cnn width (default: %(default)s)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feature-sieve",
        description="Feature sieve (SiFer, ICML 2023): train a classifier whose lower layers forget features a "
        "small aux head can read; baselines ERM, JTT, Group DRO; group-robustness evaluation.",
    )
    add_debug_flag(p)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train one method and save the model + metrics")
    _add_data_args(t)
    t.add_argument("--method", choices=METHODS, default="sieve", help="default: %(default)s")
    t.add_argument("--steps", type=positive_int, default=400)
    t.add_argument("--batch-size", type=positive_int, default=64)
    t.add_argument("--lr", type=positive_float, default=0.05, help="main update lr (default: %(default)s)")
    t.add_argument("--momentum", type=momentum_type, default=0.9)
    t.add_argument("--weight-decay", type=nonneg_float, default=1e-4)
    t.add_argument(
        "--sieve-layer", default="conv1", help="module name the aux head reads (default: %(default)s)"
    )
    t.add_argument("--aux-head", choices=("conv", "linear", "mlp"), default="linear")
    t.add_argument("--aux-depth", type=positive_int, default=1)
    t.add_argument("--aux-width", type=positive_int, default=16)
    t.add_argument("--aux-stride", type=positive_int, default=1)
    t.add_argument("--aux-pool", choices=("avg", "max", "flatten", "grid2", "cls"), default="avg")
    t.add_argument("--aux-lr", type=positive_float, default=0.05)
    t.add_argument(
        "--forget-every", type=nonneg_int, default=3, help="F: forget when step %% F == 0 (0 = never)"
    )
    t.add_argument("--forget-lr", type=positive_float, default=0.02)
    t.add_argument("--forget-momentum", type=momentum_type, default=0.0)
    t.add_argument("--freeze-bn", action="store_true", help="keep backbone BatchNorm in eval mode")
    t.add_argument(
        "--no-efficient", action="store_true", help="full forward in the aux/forget steps (as released)"
    )
    t.add_argument("--jtt-identify-steps", type=positive_int, default=100)
    t.add_argument(
        "--jtt-upweight", type=float_range(1.0), default=20.0, help="JTT up-sampling factor (>= 1)"
    )
    t.add_argument("--dro-eta", type=positive_float, default=0.05)
    t.add_argument(
        "--selector", choices=SELECTORS, default="last", help="model selection (default: %(default)s)"
    )
    t.add_argument("--eval-every", type=positive_int)
    t.add_argument(
        "--out", default="feature-sieve-run", help="output folder (model.pt, metrics.json, checkpoint)"
    )
    t.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    add_runtime_args(t)
    add_debug_flag(t)

    e = sub.add_parser("evaluate", help="group metrics of a saved model (from `train --out`)")
    e.add_argument("run_dir", type=existing_dir, help="folder written by `feature-sieve train`")
    e.add_argument("--split", choices=("train", "validation", "test"), default="test")
    e.add_argument(
        "--data-root", "--root", dest="data_root", type=existing_dir, help="override the dataset folder"
    )
    e.add_argument("--workers", type=nonneg_int, default=0, help="DataLoader workers (image datasets)")
    add_runtime_args(e)
    add_debug_flag(e)

    s = sub.add_parser("smoke", help="ERM vs sieve (and the other methods) on the toy data in a few minutes")
    s.add_argument("--steps", type=positive_int, default=200)
    s.add_argument("--seeds", type=positive_int, default=1, help="number of seeds (0..N-1)")
    s.add_argument(
        "--dataset",
        choices=("spurious_digits", "spurious_digits_color", "digit_dominoes"),
        default="spurious_digits_color",
    )
    s.add_argument(
        "--methods",
        type=list_of(choice_of(METHODS)),
        default=["erm", "sieve"],
        help="comma list of " + ",".join(METHODS),
    )
    add_runtime_args(s)
    add_debug_flag(s)
    b = add_bench_command(sub, "feature-sieve")
    add_debug_flag(b)
    return p


def _line(e: BaseException) -> str:
    text = str(e).strip().strip("'\"") or type(e).__name__
    return text.splitlines()[0][:400]


def _data(args: argparse.Namespace) -> dict:
    from .data import load_dataset

    root = getattr(args, "data_root", None)
    if args.dataset in ("waterbirds", "celeba"):
        require(root is not None, f"--dataset {args.dataset} needs --data-root (a local copy; no downloads)")
    try:
        return load_dataset(
            args.dataset,
            args.seed,
            args.train_correlation,
            None if root is None else str(root),
            args.image_size,
        )
    except (ValueError, KeyError) as e:
        raise UserError(f"cannot load --dataset {args.dataset}: {_line(e)}") from None


def _build(args: argparse.Namespace, data: dict, pretrained: bool = True):
    from .models import PretrainedError, build_model

    x0 = data["train"][0][0]
    shape = tuple(x0.shape)
    path = getattr(args, "pretrained", None) if pretrained else None
    try:
        model = build_model(args.model, shape[0], 2, shape[1:], args.width, pretrained=path)
    except PretrainedError as e:
        raise UserError(f"--pretrained: {_line(e)}") from None
    except (ValueError, RuntimeError, TypeError) as e:
        raise UserError(f"--model {args.model!r}: {_line(e)}") from None
    return model, shape


def _json_safe(obj):
    """Non-finite floats -> None (e.g. the accuracy of a group absent from a split), for strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# arguments that do not change what is trained: a checkpoint written under other values may be resumed
_RUNTIME_ONLY = (
    "cmd",
    "func",
    "debug",
    "out",
    "no_resume",
    "no_progress",
    "device",
    "threads",
    "workers",
    "steps",
)


def _run_config(args: argparse.Namespace) -> dict:
    """The training configuration a checkpoint was written under (compared before resuming)."""
    return _json_safe({k: v for k, v in sorted(vars(args).items()) if k not in _RUNTIME_ONLY})


def cmd_train(args: argparse.Namespace, device) -> dict:
    import torch

    from paperworks_shared.files import atomic_write_json

    from .methods import ERM, GroupDRO, Method
    from .sieve import FeatureSieve
    from .train import CheckpointError, evaluate, fit, group_counts, load_checkpoint_meta, save_model

    # every user input is checked before any training: output folder, data, model, sieve layer, checkpoint
    out = check_out_dir(args.out)
    ckpt = out / "checkpoint.pt"
    run_cfg = _run_config(args)
    if ckpt.exists() and not args.no_resume:
        try:
            meta = load_checkpoint_meta(ckpt)
        except CheckpointError as e:
            raise UserError(f"{_line(e)} (or pass --no-resume)") from None
        old = meta.get("config")
        if old is not None and old != run_cfg:
            diff = sorted(k for k in set(old) | set(run_cfg) if old.get(k) != run_cfg.get(k))
            raise UserError(
                f"{ckpt} was written with other settings ({', '.join(diff)}); use another --out or pass --no-resume"
            )
    torch.manual_seed(args.seed)
    data = _data(args)
    model, shape = _build(args, data)
    main = dict(lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    fit_kw = dict(
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
        selector=args.selector,
        val=data["validation"] if args.selector != "last" else None,
        eval_every=args.eval_every,
        device=device,
        num_workers=args.workers,
        checkpoint_meta={"config": run_cfg},
    )
    method: Method | None = None
    if args.method == "erm":
        method = ERM(model, 2, **main)
    elif args.method == "group_dro":
        method = GroupDRO(model, 2, n_groups=4, eta=args.dro_eta, **main)
    elif args.method in ("sieve", "wrong_sign"):
        from .losses import forget_loss_uniform, forget_loss_wrong_sign

        try:
            method = FeatureSieve(
                model,
                args.sieve_layer,
                2,
                shape,
                aux_head=args.aux_head,
                aux_depth=args.aux_depth,
                aux_width=args.aux_width,
                aux_stride=args.aux_stride,
                aux_pool=args.aux_pool,
                forget_every=args.forget_every,
                forget_lr=args.forget_lr,
                forget_momentum=args.forget_momentum,
                aux_lr=args.aux_lr,
                freeze_bn=args.freeze_bn,
                efficient=not args.no_efficient,
                forget_loss=forget_loss_wrong_sign if args.method == "wrong_sign" else forget_loss_uniform,
                **main,
            )
        except (KeyError, ValueError, TypeError) as e:
            raise UserError(f"--sieve-layer {args.sieve_layer!r} / aux head: {_line(e)}") from None
    try:
        if args.method == "jtt":
            from .jtt import run_jtt

            method, hist, _ = run_jtt(
                model,
                2,
                data["train"],
                args.steps,
                args.jtt_identify_steps,
                args.jtt_upweight,
                erm_kwargs=main,
                checkpoint_dir=out,
                resume=not args.no_resume,
                **fit_kw,
            )
        else:
            assert method is not None
            hist = fit(
                method, data["train"], args.steps, checkpoint_dir=out, resume=not args.no_resume, **fit_kw
            )
    except CheckpointError as e:
        raise UserError(f"{_line(e)} (or pass --no-resume)") from None
    counts = group_counts(data["train"], 4).tolist()
    metrics = {
        s: evaluate(method.model, data[s], 4, counts, num_workers=args.workers)
        for s in ("validation", "test")
    }
    # model first, then config, metrics last: `evaluate` needs all three, each written atomically
    save_model(out / "model.pt", method.model, meta={"config": run_cfg})
    config = {k: v for k, v in vars(args).items() if k not in ("func", "debug")}
    atomic_write_json(out / "config.json", _json_safe(config))
    atomic_write_json(
        out / "metrics.json",
        _json_safe({"train_group_counts": counts, "best_step": hist.best_step, **metrics}),
    )
    _print(args.method, metrics["test"])
    return metrics


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _print(name: str, ev: dict) -> None:
    print(
        f"{name}: avg {_fmt(ev['avg_acc'])}  train-weighted avg {_fmt(ev['weighted_avg_acc'])}  "
        f"worst_group_acc {_fmt(ev['worst_group_acc'])} (group {ev['worst_group']})"
    )
    for r in ev["per_group"]:
        print(f"  group {r['group']}: n={r['n']:4d} acc={_fmt(r['acc'])}")


def cmd_evaluate(args: argparse.Namespace, device) -> dict:
    from .train import CheckpointError, evaluate, load_model_state

    run = Path(args.run_dir)
    for f in ("config.json", "model.pt", "metrics.json"):
        require(
            (run / f).is_file(), f"{run / f} not found: is {run} a folder written by `feature-sieve train`?"
        )
    try:
        cfg = json.loads((run / "config.json").read_text())
        counts = json.loads((run / "metrics.json").read_text())["train_group_counts"]
        cfg = argparse.Namespace(**cfg)
        for k in ("dataset", "seed", "train_correlation", "image_size", "model", "width", "method"):
            getattr(cfg, k)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{run}: config.json / metrics.json unreadable or incomplete: {_line(e)}") from None
    # runs written before --data-root was introduced stored the folder as "root"
    cfg.data_root = args.data_root or getattr(cfg, "data_root", None) or getattr(cfg, "root", None)
    data = _data(cfg)
    model, _ = _build(cfg, data, pretrained=False)  # the trained weights replace any initialisation
    try:
        state = load_model_state(run / "model.pt")
        model.load_state_dict(state)
    except CheckpointError as e:
        raise UserError(_line(e)) from None
    except (RuntimeError, TypeError, AttributeError) as e:
        raise UserError(f"{run / 'model.pt'} does not fit the model in config.json: {_line(e)}") from None
    model.to(device)
    ev = evaluate(model, data[args.split], 4, counts, num_workers=args.workers)
    _print(f"{cfg.method} [{args.split}]", ev)
    return ev


def cmd_smoke(args: argparse.Namespace, device) -> list[dict]:
    from .data import load_dataset
    from .experiment import ToyConfig, run_one

    cfg = ToyConfig(steps=args.steps)
    rows = []
    for seed in range(args.seeds):
        data = load_dataset(args.dataset, seed=seed)
        for m in args.methods:
            r = run_one(data, m, seed, cfg, device=device)
            rows.append(r)
            print(
                f"seed {seed} {m:10s} avg {r['avg_acc']:.3f}  worst_group_acc {r['worst_group_acc']:.3f}  "
                f"shortcut probe {r['shortcut_probe']:.3f}  {r['seconds']:.1f}s",
                flush=True,
            )
    return rows


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "bench":
        return int(args.func(args) or 0)
    device = apply_runtime_args(args)  # --threads (no cap: torch's default otherwise) and --device
    {"train": cmd_train, "evaluate": cmd_evaluate, "smoke": cmd_smoke}[args.cmd](args, device)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog="feature-sieve")


if __name__ == "__main__":
    sys.exit(main())
