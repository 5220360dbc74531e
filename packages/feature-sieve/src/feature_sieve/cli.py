"""`feature-sieve` console script: train / evaluate / smoke."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .data import DATASETS, load_dataset
from .methods import ERM, GroupDRO
from .models import build_model
from .sieve import FeatureSieve
from .train import SELECTORS, evaluate, fit, group_counts

METHODS = ("sieve", "erm", "group_dro", "jtt", "wrong_sign")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", choices=DATASETS, default="spurious_digits_color", help="dataset (default: %(default)s)"
    )
    p.add_argument("--root", help="local folder for waterbirds / celeba (metadata CSV + images)")
    p.add_argument("--train-correlation", type=float, help="toy data: P(shortcut = label) in training")
    p.add_argument(
        "--image-size", type=int, default=224, help="waterbirds/celeba resize (default: %(default)s)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="data split / init / batch-order seed (default: %(default)s)"
    )
    p.add_argument("--model", default="small_cnn", help="'small_cnn' or a timm model name (random init)")
    p.add_argument("--width", type=int, default=8, help="small_cnn width (default: %(default)s)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feature-sieve",
        description="Feature sieve (SiFer, ICML 2023): train a classifier whose lower layers forget features a "
        "small aux head can read; baselines ERM, JTT, Group DRO; group-robustness evaluation.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train one method and save the model + metrics")
    _add_data_args(t)
    t.add_argument("--method", choices=METHODS, default="sieve", help="default: %(default)s")
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=0.05, help="main update lr (default: %(default)s)")
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument(
        "--sieve-layer", default="conv1", help="module name the aux head reads (default: %(default)s)"
    )
    t.add_argument("--aux-head", choices=("conv", "linear", "mlp"), default="linear")
    t.add_argument("--aux-depth", type=int, default=1)
    t.add_argument("--aux-width", type=int, default=16)
    t.add_argument("--aux-stride", type=int, default=1)
    t.add_argument("--aux-pool", choices=("avg", "max", "flatten", "grid2", "cls"), default="avg")
    t.add_argument("--aux-lr", type=float, default=0.05)
    t.add_argument("--forget-every", type=int, default=3, help="F: forget when step %% F == 0 (0 = never)")
    t.add_argument("--forget-lr", type=float, default=0.02)
    t.add_argument("--forget-momentum", type=float, default=0.0)
    t.add_argument("--freeze-bn", action="store_true", help="keep backbone BatchNorm in eval mode")
    t.add_argument(
        "--no-efficient", action="store_true", help="full forward in the aux/forget steps (as released)"
    )
    t.add_argument("--jtt-identify-steps", type=int, default=100)
    t.add_argument("--jtt-upweight", type=float, default=20.0)
    t.add_argument("--dro-eta", type=float, default=0.05)
    t.add_argument(
        "--selector", choices=list(SELECTORS), default="last", help="model selection (default: %(default)s)"
    )
    t.add_argument("--eval-every", type=int)
    t.add_argument(
        "--out", default="feature-sieve-run", help="output folder (model.pt, metrics.json, checkpoint)"
    )
    t.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    t.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("evaluate", help="group metrics of a saved model (from `train --out`)")
    e.add_argument("run_dir", help="folder written by `feature-sieve train`")
    e.add_argument("--split", choices=("train", "validation", "test"), default="test")
    e.add_argument("--root", help="override the dataset root")

    s = sub.add_parser("smoke", help="ERM vs sieve (and the other methods) on the toy data in a few minutes")
    s.add_argument("--steps", type=int, default=200)
    s.add_argument("--seeds", type=int, default=1)
    s.add_argument(
        "--dataset",
        choices=("spurious_digits", "spurious_digits_color", "digit_dominoes"),
        default="spurious_digits_color",
    )
    s.add_argument("--methods", default="erm,sieve", help="comma list of " + ",".join(METHODS))
    return p


def _build(args, data):
    x0 = data["train"][0][0]
    shape = tuple(x0.shape)
    model = build_model(args.model, shape[0], 2, shape[1:], args.width)
    return model, shape


def cmd_train(args) -> dict:
    torch.manual_seed(args.seed)
    data = load_dataset(args.dataset, args.seed, args.train_correlation, args.root, args.image_size)
    model, shape = _build(args, data)
    main = dict(lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fit_kw = dict(
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
        selector=args.selector,
        val=data["validation"] if args.selector != "last" else None,
        eval_every=args.eval_every,
    )
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
        if args.method == "erm":
            method = ERM(model, 2, **main)
        elif args.method == "group_dro":
            method = GroupDRO(model, 2, n_groups=4, eta=args.dro_eta, **main)
        else:
            from .losses import forget_loss_uniform, forget_loss_wrong_sign

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
        hist = fit(method, data["train"], args.steps, checkpoint_dir=out, resume=not args.no_resume, **fit_kw)
    counts = group_counts(data["train"], 4).tolist()
    metrics = {s: _clean(evaluate(method.model, data[s], 4, counts)) for s in ("validation", "test")}
    torch.save(method.model.state_dict(), out / "model.pt")
    config = {k: v for k, v in vars(args).items() if k != "func"}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    (out / "metrics.json").write_text(
        json.dumps({"train_group_counts": counts, "best_step": hist.best_step, **metrics}, indent=1)
    )
    _print(args.method, metrics["test"])
    return metrics


def _clean(ev: dict) -> dict:
    return {k: v for k, v in ev.items()}


def _print(name: str, ev: dict) -> None:
    print(
        f"{name}: avg {ev['avg_acc']:.3f}  train-weighted avg {ev['weighted_avg_acc']:.3f}  "
        f"worst-group {ev['worst_group_acc']:.3f} (group {ev['worst_group']})"
    )
    for r in ev["per_group"]:
        print(f"  group {r['group']}: n={r['n']:4d} acc={r['acc']:.3f}")


def cmd_evaluate(args) -> dict:
    run = Path(args.run_dir)
    for f in ("config.json", "model.pt", "metrics.json"):
        if not (run / f).is_file():
            raise FileNotFoundError(
                f"{run / f} not found: is {run} a folder written by `feature-sieve train`?"
            )
    cfg = argparse.Namespace(**json.loads((run / "config.json").read_text()))
    if args.root:
        cfg.root = args.root
    data = load_dataset(cfg.dataset, cfg.seed, cfg.train_correlation, cfg.root, cfg.image_size)
    model, _ = _build(cfg, data)
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    counts = json.loads((run / "metrics.json").read_text())["train_group_counts"]
    ev = evaluate(model, data[args.split], 4, counts)
    _print(f"{cfg.method} [{args.split}]", ev)
    return ev


def cmd_smoke(args) -> list[dict]:
    from .experiment import METHODS as EXP_METHODS
    from .experiment import ToyConfig, run_one

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in EXP_METHODS]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; choose from {EXP_METHODS}")
    cfg = ToyConfig(steps=args.steps)
    rows = []
    for seed in range(args.seeds):
        data = load_dataset(args.dataset, seed=seed)
        for m in methods:
            r = run_one(data, m, seed, cfg)
            rows.append(r)
            print(
                f"seed {seed} {m:10s} avg {r['avg_acc']:.3f}  worst-group {r['worst_group_acc']:.3f}  "
                f"shortcut probe {r['shortcut_probe']:.3f}  {r['seconds']:.1f}s",
                flush=True,
            )
    return rows


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    {"train": cmd_train, "evaluate": cmd_evaluate, "smoke": cmd_smoke}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
