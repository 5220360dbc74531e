"""`icbm` console script: train, evaluate, ask (interactive), demo, bench."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paperworks_shared.cli import (
    UserError,
    add_bench_command,
    add_debug_flag,
    add_runtime_args,
    apply_runtime_args,
    check_out_dir,
    existing_file,
    int_range,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    require,
    run_cli,
)

POLICIES = ("random", "random-fixed", "static-greedy", "uncertainty", "influence", "coop", "eig", "oracle")


def _load_data(args):
    """(train, val, test, meta) from --data NPZ or the synthetic task."""
    import numpy as np
    import torch

    from .data import OccludedConceptsTask, categorical_task

    if getattr(args, "data", None):
        ds = _read_npz(args.data, args.groups)
        rng = np.random.default_rng(args.seed)
        perm = torch.as_tensor(rng.permutation(len(ds)))
        n_tr, n_va = int(0.6 * len(ds)), int(0.2 * len(ds))
        return (
            ds.subset(perm[:n_tr]),
            ds.subset(perm[n_tr : n_tr + n_va]),
            ds.subset(perm[n_tr + n_va :]),
            {
                "in_features": ds.x.shape[1],
                "n_classes": int(ds.y.max()) + 1,
                "n_concepts": ds.c.shape[1],
                "source": str(args.data),
            },
        )
    task = (
        categorical_task(seed=args.seed)
        if args.synthetic == "categorical"
        else OccludedConceptsTask(seed=args.seed)
    )
    tr, va, te = task.splits(args.n_train, args.n_train // 4, args.n_train // 2, seed=args.seed)
    return (
        tr,
        va,
        te,
        {
            "in_features": task.in_features,
            "n_concepts": tr.c.shape[1],
            "n_classes": task.n_classes,
            "source": f"synthetic:{args.synthetic}:{args.seed}",
        },
    )


def _read_npz(path, groups_path):
    """The --data NPZ (and --groups JSON) as a ConceptDataset; UserError naming the file otherwise."""
    import numpy as np
    import torch

    from .data import ConceptDataset
    from .groups import ConceptGroups
    from .training import check_training_batch

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # not a zip / truncated / pickled object arrays
        why = str(e).strip() or type(e).__name__
        raise UserError(f"--data {path}: cannot be read as an .npz file ({why})") from None
    missing = [k for k in ("x", "c", "y") if k not in arrays]
    require(not missing, f"--data {path}: missing array(s) {missing} (need x, c, y[, visible])")
    try:
        x = torch.as_tensor(np.asarray(arrays["x"], dtype=np.float32))
        c = torch.as_tensor(np.asarray(arrays["c"], dtype=np.float32))
        y_raw = np.asarray(arrays["y"])
        require(
            np.issubdtype(y_raw.dtype, np.integer)
            or (
                np.issubdtype(y_raw.dtype, np.floating)
                and np.all(np.isfinite(y_raw))
                and np.all(y_raw == np.round(y_raw))
            ),
            f"--data {path}: y must hold integer class ids",
        )
        y = torch.as_tensor(y_raw.astype(np.int64))
        vis = torch.as_tensor(np.asarray(arrays["visible"])).bool() if "visible" in arrays else None
    except (TypeError, ValueError) as e:
        raise UserError(f"--data {path}: arrays must be numeric ({e})") from None
    require(x.dim() == 2, f"--data {path}: x must be (N, D) feature vectors, got shape {tuple(x.shape)}")
    require(len(y) >= 10, f"--data {path}: needs at least 10 rows to split into train/val/test, got {len(y)}")
    require(c.dim() == 2, f"--data {path}: c must be (N, C) concept labels, got shape {tuple(c.shape)}")
    require(
        int(y.max()) < 100_000 if len(y) else True,
        f"--data {path}: class id {int(y.max())} is implausibly large (ids must be 0..K-1)",
    )
    try:
        groups = (
            ConceptGroups.from_dict(json.loads(Path(groups_path).read_text(encoding="utf-8")))
            if groups_path
            else ConceptGroups.singletons(c.shape[1])
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"--groups {groups_path}: not a valid groups file ({e})") from None
    try:
        ds = ConceptDataset(x, c, y, vis, groups)
        check_training_batch(ds.x, ds.c, ds.y, int(ds.y.max()) + 1, f"--data {path}")
    except ValueError as e:
        raise UserError(f"--data {path}: {e}" if str(path) not in str(e) else str(e)) from None
    return ds


def _policy(name, model, val, args):
    from . import policies as P
    from .tune import tune_coop

    if name == "random":
        return P.Random(seed=args.seed)
    if name == "random-fixed":
        return P.Random(seed=args.seed, per_instance=False)
    if name == "static-greedy":
        return P.StaticGreedy.fit(model, val)
    if name == "uncertainty":
        return P.Uncertainty()
    if name == "influence":
        return P.Influence(group_mode=args.group_mode)
    if name == "eig":
        return P.ExpectedInformationGain(group_mode=args.group_mode)
    if name == "oracle":
        return P.OracleGreedy()
    if args.beta is None:
        return tune_coop(
            model,
            val,
            budget=min(5, len(model.groups)),
            gammas=(args.gamma,),
            influence=P.Influence(group_mode=args.group_mode),
        ).policy
    return P.CooP(beta=args.beta, gamma=args.gamma, influence=P.Influence(group_mode=args.group_mode))


def _data_args(p):
    p.add_argument(
        "--data",
        type=existing_file,
        help="NPZ with arrays x (N, D) finite, c (N, C) 0/1, y (N,) class ids and optional visible (N, C)",
    )
    p.add_argument(
        "--groups",
        type=existing_file,
        help="JSON {groups: {name: [idx...]}, kinds: {...}, costs: {...}} (default: singletons)",
    )
    p.add_argument(
        "--synthetic",
        choices=("occluded", "categorical"),
        default="occluded",
        help="synthetic task when --data is not given (default: occluded)",
    )
    p.add_argument(
        "--n-train",
        type=int_range(40, 10_000_000),
        default=4000,
        help="synthetic training size, >= 40 (val = /4, test = /2)",
    )
    p.add_argument("--seed", type=nonneg_int, default=0)
    add_runtime_args(p)
    add_debug_flag(p)


def cmd_train(args):
    import torch

    from .checkpoint import CHECKPOINT_FILE, save_checkpoint
    from .model import linear_cbm
    from .training import fit

    require(not Path(args.out).expanduser().is_file(), f"--out {args.out!r} exists and is not a directory")
    device = apply_runtime_args(args)
    torch.manual_seed(args.seed)
    tr, _va, _te, meta = _load_data(args)  # validates --data / --groups (no training yet)
    out_dir = check_out_dir(args.out)  # created only once the inputs are known to be good
    model = linear_cbm(
        meta["in_features"],
        tr.groups,
        meta["n_classes"],
        hidden=args.hidden,
        mode=args.mode,
        bottleneck=args.bottleneck,
    ).to(device)
    fit(
        model,
        tr,
        epochs=args.epochs,
        lr=args.lr,
        concept_weight=args.concept_weight,
        seed=args.seed,
        progress=not args.no_progress,
    )
    path = save_checkpoint(
        model, out_dir / CHECKPOINT_FILE, meta["in_features"], meta["n_classes"], args.hidden, extra=meta
    )
    print(
        f"saved {path} ({model.mode}, bottleneck={model.bottleneck}, format={model.intervention_format}, "
        f"device={device})"
    )


def cmd_evaluate(args):
    from paperworks_shared.bench import markdown_table

    from .evaluate import evaluate_interventions

    model, _cfg = _load_model(args)
    _tr, va, te, meta = _load_data(args)
    _check_compatible(model, meta, args)
    model.to(apply_runtime_args(args))
    names = POLICIES if args.policy == "all" else (args.policy,)
    rows = []
    for n in names:
        curve = evaluate_interventions(
            model,
            te,
            _policy(n, model, va, args),
            args.budget,
            cost_budget=args.cost_budget,
            progress=not args.no_progress,
        )
        rows.append(
            {
                "policy": n,
                **{f"k={k}": float(a) for k, a in zip(curve.k, curve.accuracy)},
                "mean cost": float(curve.mean_cost[-1]),
            }
        )
    print(markdown_table(rows))


def _load_model(args):
    from .checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        raise UserError(f"--checkpoint {e}") from None


def _check_compatible(model, meta, args) -> None:
    """The data must fit the checkpoint, and the budget the number of concept groups."""
    want = model.concept_encoder.in_features if hasattr(model.concept_encoder, "in_features") else None
    require(
        want is None or want == meta["in_features"],
        f"the data have {meta['in_features']} features but --checkpoint {args.checkpoint} expects {want}",
    )
    require(
        model.groups.n_concepts == meta["n_concepts"],
        f"the data have {meta['n_concepts']} concepts but --checkpoint {args.checkpoint} expects "
        f"{model.groups.n_concepts}",
    )
    budget = getattr(args, "budget", None)
    if budget is not None:
        require(
            budget <= len(model.groups),
            f"--budget {budget} is larger than the number of concept groups ({len(model.groups)})",
        )


def cmd_ask(args, stdin=None, out=print):
    import numpy as np
    import torch

    from .dialogue import InteractiveDialogue

    stdin = stdin or sys.stdin
    model, _cfg = _load_model(args)
    _tr, va, te, meta = _load_data(args)
    _check_compatible(model, meta, args)
    device = apply_runtime_args(args)
    model.to(device)
    if args.input:
        try:
            x = torch.tensor(np.load(args.input, allow_pickle=False), dtype=torch.float32).reshape(1, -1)
        except (OSError, ValueError, TypeError) as e:
            raise UserError(f"--input {args.input}: cannot be read as a .npy array ({e})") from None
        require(
            x.shape[1] == meta["in_features"],
            f"--input {args.input}: {x.shape[1]} features, the model expects {meta['in_features']}",
        )
        require(bool(torch.isfinite(x).all()), f"--input {args.input}: holds NaN or inf values")
        truth = None
    else:
        require(
            0 <= args.index < len(te),
            f"--index {args.index} is out of range: the test split has {len(te)} rows",
        )
        x, truth = te.x[args.index : args.index + 1], (te.c[args.index], int(te.y[args.index]))
    pol = _policy(args.policy, model, va, args)
    d = InteractiveDialogue(model, x.to(device), policy=pol, budget=args.budget)

    def show():
        p = d.prediction()
        top = torch.argsort(p, descending=True)[:3].tolist()
        out("  prediction: " + ", ".join(f"class {c}: {float(p[c]):.3f}" for c in top))

    out(
        f"icbm ask: policy {pol!r}, budget {args.budget}. Answer 0/1 per concept, '?' = don't know, 'q' = quit."
    )
    show()
    while not d.done:
        q = d.next_query()
        hint = (
            f" (true: {truth[0][q.concepts].int().tolist()})" if truth is not None and args.show_truth else ""
        )
        out(
            f"Q{d.asked + 1}: group {q.group!r} [{q.kind}], concepts {q.concepts}, model thinks "
            f"{[round(p, 2) for p in q.predicted_probs]}; score {q.score:.3f} {q.breakdown and {k: round(v, 3) for k, v in q.breakdown.items()}}{hint}"
        )
        while True:
            line = stdin.readline()
            if not line or line.strip() == "q":
                out("bye")
                return d
            line = line.strip()
            try:
                d.answer(q, None if line == "?" else [int(v) for v in line.replace(",", " ").split()])
                break
            except (ValueError, KeyError) as e:
                out(f"  invalid answer: {e}; try again")
        show()
    if truth is not None:
        out(f"true class: {truth[1]}")
    return d


def cmd_demo(args):
    from paperworks_shared.bench import markdown_table

    from .data import OccludedConceptsTask
    from .experiments import POLICY_ORDER, run_policies, standard_policies, train_synthetic

    task = OccludedConceptsTask(seed=args.seed)
    require(
        args.budget <= len(task.groups),
        f"--budget {args.budget} is larger than the number of concept groups ({len(task.groups)})",
    )
    device = apply_runtime_args(args)
    # the synthetic model is trained (and cached) on the CPU; the policies are evaluated on --device
    model, _tr, va, te = train_synthetic(
        task, (args.n_train, args.n_train // 4, args.n_train // 2), split_seed=args.seed, epochs=args.epochs
    )
    model.to(device)
    pols, tuned = standard_policies(model, va, args.budget)
    res = run_policies(model, te, pols, args.budget)
    print(f"CooP beta tuned on validation: {tuned.best['beta']}")
    print(
        markdown_table(
            [
                {"policy": n, **{f"k={k}": float(a) for k, a in enumerate(res[n]["accuracy"])}}
                for n in POLICY_ORDER
            ]
        )
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="icbm",
        description="Interactive concept bottleneck models (CooP, AAAI 2023): train a CBM, evaluate query "
        "policies as accuracy-vs-interactions curves, or answer the model's questions yourself.",
    )
    add_debug_flag(ap)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train a feature-vector CBM and save a checkpoint")
    _data_args(p)
    p.add_argument("--mode", choices=("independent", "sequential", "joint"), default="independent")
    p.add_argument("--bottleneck", choices=("probs", "logits", "hard"), default="probs")
    p.add_argument(
        "--hidden", type=int_range(1, 65536), default=None, help="MLP head width (default: linear head)"
    )
    p.add_argument("--epochs", type=int_range(1, 100_000), default=60)
    p.add_argument("--lr", type=positive_float, default=1e-2)
    p.add_argument("--concept-weight", type=nonneg_float, default=1.0, help="lambda of the joint loss (>= 0)")
    p.add_argument(
        "--out",
        default="icbm-run",
        help="output folder (default icbm-run): receives checkpoint.pt, written atomically",
    )
    p.set_defaults(func=cmd_train)

    def policy_args(p, default="coop"):
        p.add_argument("--policy", default=default, choices=POLICIES + (("all",) if default == "all" else ()))
        p.add_argument(
            "--beta",
            type=nonneg_float,
            default=None,
            help="CooP influence weight, >= 0 (default: tuned on val)",
        )
        p.add_argument("--gamma", type=nonneg_float, default=0.0, help="CooP cost weight, >= 0")
        p.add_argument("--group-mode", default="auto", choices=("auto", "v1", "v2", "categorical"))

    p = sub.add_parser("evaluate", help="accuracy after k = 0..budget interactions for one or all policies")
    _data_args(p)
    p.add_argument(
        "--checkpoint", required=True, help="folder (or its checkpoint.pt) written by `icbm train --out`"
    )
    p.add_argument("--budget", type=positive_int, default=5, help="queries per instance (<= groups)")
    p.add_argument("--cost-budget", type=positive_float, default=None)
    policy_args(p, default="all")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("ask", help="interactive terminal dialogue: the model asks you for concept values")
    _data_args(p)
    p.add_argument(
        "--checkpoint", required=True, help="folder (or its checkpoint.pt) written by `icbm train --out`"
    )
    p.add_argument(
        "--input", type=existing_file, help=".npy feature vector (default: a test instance, see --index)"
    )
    p.add_argument("--index", type=nonneg_int, default=0)
    p.add_argument("--budget", type=positive_int, default=5, help="queries (<= groups)")
    p.add_argument(
        "--show-truth", action="store_true", help="print the true answer (synthetic test instances)"
    )
    policy_args(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("demo", help="train on the synthetic task and print the curves of all policies")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--n-train", type=int_range(40, 10_000_000), default=4000)
    p.add_argument("--epochs", type=int_range(1, 100_000), default=60)
    p.add_argument("--budget", type=positive_int, default=8, help="queries per instance (<= 16 groups)")
    add_runtime_args(p)
    add_debug_flag(p)
    p.set_defaults(func=cmd_demo)

    p = add_bench_command(sub, "icbm")
    add_debug_flag(p)
    return ap


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "bench":
        check_out_dir(args.results, what="--results")
        return int(args.func(args) or 0)
    args.func(args)  # --threads / --device are applied by each command after its checks
    return 0


def main(argv=None) -> int:
    """Console entry point: user errors end with one line `icbm: error: ...` and exit 2."""
    return run_cli(_main, argv, prog="icbm")


if __name__ == "__main__":
    raise SystemExit(main())
