"""`icbm` console script: train, evaluate, ask (interactive), demo, bench."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

POLICIES = ("random", "random-fixed", "static-greedy", "uncertainty", "influence", "coop", "eig", "oracle")


def _load_data(args):
    """(train, val, test, meta) from --data NPZ or the synthetic task."""
    from .data import ConceptDataset, OccludedConceptsTask, categorical_task
    from .groups import ConceptGroups

    if getattr(args, "data", None):
        z = np.load(args.data)
        for k in ("x", "c", "y"):
            if k not in z:
                raise SystemExit(f"{args.data}: missing array {k!r} (need x, c, y[, visible])")
        groups = (
            ConceptGroups.from_dict(json.loads(Path(args.groups).read_text()))
            if args.groups
            else ConceptGroups.singletons(z["c"].shape[1])
        )
        ds = ConceptDataset(
            torch.tensor(z["x"], dtype=torch.float32),
            torch.tensor(z["c"], dtype=torch.float32),
            torch.tensor(z["y"], dtype=torch.long),
            torch.tensor(z["visible"]).bool() if "visible" in z else None,
            groups,
        )
        rng = np.random.default_rng(args.seed)
        perm = torch.as_tensor(rng.permutation(len(ds)))
        n_tr, n_va = int(0.6 * len(ds)), int(0.2 * len(ds))
        return (
            ds.subset(perm[:n_tr]),
            ds.subset(perm[n_tr : n_tr + n_va]),
            ds.subset(perm[n_tr + n_va :]),
            {"in_features": ds.x.shape[1], "n_classes": int(ds.y.max()) + 1, "source": args.data},
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
            "n_classes": task.n_classes,
            "source": f"synthetic:{args.synthetic}:{args.seed}",
        },
    )


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
        "--data", help="NPZ with arrays x (N, D), c (N, C) 0/1, y (N,) and optional visible (N, C)"
    )
    p.add_argument(
        "--groups", help="JSON {groups: {name: [idx...]}, kinds: {...}, costs: {...}} (default: singletons)"
    )
    p.add_argument(
        "--synthetic",
        choices=("occluded", "categorical"),
        default="occluded",
        help="synthetic task when --data is not given (default: occluded)",
    )
    p.add_argument("--n-train", type=int, default=4000, help="synthetic training size (val = /4, test = /2)")
    p.add_argument("--seed", type=int, default=0)


def cmd_train(args):
    from .checkpoint import save_checkpoint
    from .model import linear_cbm
    from .training import fit

    torch.manual_seed(args.seed)
    tr, _va, _te, meta = _load_data(args)
    model = linear_cbm(
        meta["in_features"],
        tr.groups,
        meta["n_classes"],
        hidden=args.hidden,
        mode=args.mode,
        bottleneck=args.bottleneck,
    )
    fit(
        model,
        tr,
        epochs=args.epochs,
        lr=args.lr,
        concept_weight=args.concept_weight,
        seed=args.seed,
        progress=True,
    )
    path = save_checkpoint(model, args.out, meta["in_features"], meta["n_classes"], args.hidden, extra=meta)
    print(f"saved {path} ({model.mode}, bottleneck={model.bottleneck}, format={model.intervention_format})")


def cmd_evaluate(args):
    from paperworks_shared.bench import markdown_table

    from .checkpoint import load_checkpoint
    from .evaluate import evaluate_interventions

    model, _cfg = load_checkpoint(args.checkpoint)
    _tr, va, te, _ = _load_data(args)
    names = POLICIES if args.policy == "all" else (args.policy,)
    rows = []
    for n in names:
        curve = evaluate_interventions(
            model, te, _policy(n, model, va, args), args.budget, cost_budget=args.cost_budget, progress=True
        )
        rows.append(
            {
                "policy": n,
                **{f"k={k}": float(a) for k, a in zip(curve.k, curve.accuracy)},
                "mean cost": float(curve.mean_cost[-1]),
            }
        )
    print(markdown_table(rows))


def cmd_ask(args, stdin=None, out=print):
    from .checkpoint import load_checkpoint
    from .dialogue import InteractiveDialogue

    stdin = stdin or sys.stdin
    model, _cfg = load_checkpoint(args.checkpoint)
    _tr, va, te, _ = _load_data(args)
    if args.input:
        x = torch.tensor(np.load(args.input), dtype=torch.float32).reshape(1, -1)
        truth = None
    else:
        if not 0 <= args.index < len(te):
            raise SystemExit(f"--index must be in [0, {len(te)})")
        x, truth = te.x[args.index : args.index + 1], (te.c[args.index], int(te.y[args.index]))
    pol = _policy(args.policy, model, va, args)
    d = InteractiveDialogue(model, x, policy=pol, budget=args.budget)

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
    model, _tr, va, te = train_synthetic(
        task, (args.n_train, args.n_train // 4, args.n_train // 2), split_seed=args.seed, epochs=args.epochs
    )
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


def cmd_bench(args):
    from paperworks_shared.bench import BenchContext

    from .bench import run

    ctx = BenchContext("icbm", args.scale, args.results)
    run(ctx)
    for r in ctx.records:
        print(f"[{r.experiment}] {r.verdict}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="icbm",
        description="Interactive concept bottleneck models (CooP, AAAI 2023): train a CBM, evaluate query "
        "policies as accuracy-vs-interactions curves, or answer the model's questions yourself.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train a feature-vector CBM and save a checkpoint")
    _data_args(p)
    p.add_argument("--mode", choices=("independent", "sequential", "joint"), default="independent")
    p.add_argument("--bottleneck", choices=("probs", "logits", "hard"), default="probs")
    p.add_argument("--hidden", type=int, default=None, help="MLP head width (default: linear head)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--concept-weight", type=float, default=1.0, help="lambda of the joint loss")
    p.add_argument("--out", default="icbm-model.pt")
    p.set_defaults(func=cmd_train)

    def policy_args(p, default="coop"):
        p.add_argument("--policy", default=default, choices=POLICIES + (("all",) if default == "all" else ()))
        p.add_argument(
            "--beta", type=float, default=None, help="CooP influence weight (default: tuned on val)"
        )
        p.add_argument("--gamma", type=float, default=0.0, help="CooP cost weight")
        p.add_argument("--group-mode", default="auto", choices=("auto", "v1", "v2", "categorical"))

    p = sub.add_parser("evaluate", help="accuracy after k = 0..budget interactions for one or all policies")
    _data_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--budget", type=int, default=5)
    p.add_argument("--cost-budget", type=float, default=None)
    policy_args(p, default="all")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("ask", help="interactive terminal dialogue: the model asks you for concept values")
    _data_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", help=".npy feature vector (default: a test instance, see --index)")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--budget", type=int, default=5)
    p.add_argument(
        "--show-truth", action="store_true", help="print the true answer (synthetic test instances)"
    )
    policy_args(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("demo", help="train on the synthetic task and print the curves of all policies")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--budget", type=int, default=8)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="run the package benchmark (writes <results>/icbm/*.json + PNG)")
    p.add_argument("--scale", choices=("smoke", "cpu", "gpu"), default="smoke")
    p.add_argument("--results", default="benchmarks/results")
    p.set_defaults(func=cmd_bench)
    return ap


def main(argv=None) -> int:
    torch.set_num_threads(1)
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
