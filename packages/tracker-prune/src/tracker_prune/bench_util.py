"""Benchmark helpers: cached dense trackers, searches, prune + fine-tune runs, seed aggregation."""

from __future__ import annotations

import copy

import numpy as np
import torch

from paperworks_shared.cache import get_or_build
from paperworks_shared.repro import seed_everything

from .discover import gated_units
from .io import load, save
from .pruner import Pruner
from .trackers import build_tracker
from .train import evaluate, train

CACHE_VERSION = 2  # 2: dense trackers keep the best validation checkpoint
SEARCH_W = {"attn": 2e-3, "mlp": 1e-3, "conv": 2e-3}  # larger than the paper's: 50-step search


def example_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, 32, 32, generator=g), torch.randn(1, 3, 64, 64, generator=g)


def train_select(model, steps: int, pool, val, *, every: int, lrs, batch: int, seed: int, desc: str):
    """Train ``steps`` per learning rate in ``lrs`` from the same start, scoring the validation AUC every
    ``every`` steps (and at step 0); returns (best model, best step, best lr, best val AUC).

    The checkpoint and the learning rate are both chosen on validation, never on test. Without ``val``
    the last step of the first learning rate is returned.
    """
    if not val:
        m = copy.deepcopy(model)
        train(m, steps, pool, batch=batch, lr=lrs[0], seed=seed, desc=desc)
        return m, steps, lrs[0], float("nan")
    best = [evaluate(model, val)["auc"], 0, lrs[0], copy.deepcopy(model)]
    for lr in lrs:
        m = copy.deepcopy(model)

        def check(step, m=m, lr=lr):
            if (step + 1) % every == 0 or step + 1 == steps:
                v = evaluate(m, val)["auc"]
                m.train()
                if v > best[0]:
                    best[:] = [v, step + 1, lr, copy.deepcopy(m).eval()]

        train(m, steps, pool, batch=batch, lr=lr, seed=seed, desc=desc, callback=check)
    return best[3], best[1], best[2], best[0]


def dense_tracker(arch: str, seed: int, cfg: dict, pool, val=None) -> tuple[torch.nn.Module, bool]:
    """The dense tracker for (arch, seed), trained once and cached via `paperworks_shared.cache`.

    With ``val`` the checkpoint with the best validation AUC (every ``cfg["dense"] // 10`` steps) is kept
    and its step is stored in ``model._best_step`` (for the convergence report).
    """
    key = {
        "v": CACHE_VERSION,
        "arch": arch,
        "seed": seed,
        "steps": cfg["dense"],
        "batch": cfg["batch"],
        "pool": cfg["pool"],
        "n_val": cfg.get("n_val"),
        "config": build_tracker(arch).config,
        "torch": torch.__version__,
    }

    def build(staging):  # trained once; concurrent callers wait on the cache lock (issue 17 §5)
        from paperworks_shared.files import atomic_write_json

        seed_everything(seed)
        m = build_tracker(arch)
        every = max(cfg["dense"] // 10, 1)
        m, step, _, v = train_select(
            m,
            cfg["dense"],
            pool,
            val,
            every=every,
            lrs=[2e-3],
            batch=cfg["batch"],
            seed=seed,
            desc=f"dense {arch}",
        )
        save(m, staging / "model.pt")
        atomic_write_json(staging / "best.json", {"best_step": step, "val_auc": v if v == v else None})

    d, hit = get_or_build("tracker-prune-dense", key, build)
    m = load(d / "model.pt")
    import json

    m.__dict__["_best_step"] = json.loads((d / "best.json").read_text())["best_step"]
    m.__dict__["_cache_key"] = key  # plain attributes (not submodules / parameters)
    return m, hit


def search(dense, method: str, seed: int, cfg: dict, pool, budget: float | None = None):
    """Sparsity search from a copy of ``dense``: ViT-Slim / Network-Slimming L1, or ChipNet at ``budget``.

    ViT-Slim / NetSlim searches are cached like the dense trackers (keyed by the dense tracker's key,
    the method, steps and weights); ChipNet searches are not (their annealing state is not saved).
    """

    def run(m):
        p = Pruner(m, method, weights=SEARCH_W, seed=seed, budget=budget if method == "chipnet" else None)
        train(
            m,
            cfg["search"],
            pool,
            batch=cfg["batch"],
            lr=1e-3,
            seed=seed + 2,
            regularizer=p.regularizer,
            callback=p.search_callback(cfg["search"]),
            gate_lr=cfg["chip_gate_lr"] if method == "chipnet" else None,
            desc=f"search {method}",
        )
        return p

    dense_key = getattr(dense, "_cache_key", None)
    if method == "chipnet" or dense_key is None:
        m = copy.deepcopy(dense)
        return m, run(m)
    key = {"dense": dense_key, "method": method, "seed": seed}
    key.update(steps=cfg["search"], batch=cfg["batch"], weights=SEARCH_W, v=CACHE_VERSION)

    def build(staging):
        m = copy.deepcopy(dense)
        run(m)
        save(m, staging / "model.pt")

    d, _ = get_or_build("tracker-prune-search", key, build)
    m = load(d / "model.pt")
    return m, Pruner(m, method, weights=SEARCH_W, seed=seed)


def prune_eval(base, method, budget, scope, cfg, pool, test, seed, min_keep=1, pruner=None, val=None):
    """Masks at ``budget`` -> metrics before fine-tune -> fine-tune (checkpoint and lr chosen on ``val``)
    -> metrics after. Returns (model, before AUC, after metrics dict, best fine-tune step).

    ``pruner``: reuse a searched ChipNet pruner in place (its gates must not be re-initialised).
    """
    if pruner is None:
        m = copy.deepcopy(base)
        pruner = Pruner(m, method, seed=seed)
    else:
        m = pruner.model
    masks = pruner.masks(budget, kind="channels", scope=scope, min_keep=min_keep)
    pruner.apply(masks, fold_scales=True)
    before = evaluate(m, test)
    m, step, _, _ = train_select(
        m,
        cfg["ft"],
        pool,
        val,
        every=max(cfg["ft"] // 5, 1),
        lrs=cfg.get("ft_lrs", [1e-3]),
        batch=cfg["batch"],
        seed=seed + 1,
        desc="fine-tune",
    )
    after = evaluate(m, test)
    after["auc_before_ft"] = before["auc"]
    after["precision_2px_before_ft"] = before["precision_2px"]
    return m, before["auc"], after, step


def kept_fraction(model) -> float:
    """Fraction of all gate elements whose mask is on (the realised channel budget)."""
    units = gated_units(model)
    return sum(int(u.mask.sum()) for u in units.values()) / sum(u.mask.numel() for u in units.values())


def aggregate(rows: list[dict], keys: list[str], metrics: list[str]) -> list[dict]:
    """Mean and spread (population std over seeds) of ``metrics`` per ``keys`` group, in first-seen order.

    Each output row has ``<metric>`` (mean), ``<metric>_sd`` and a display string ``<metric> ± sd``.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for k, rs in groups.items():
        row = dict(zip(keys, k))
        row["seeds"] = len(rs)
        for m in metrics:
            v = np.array([r[m] for r in rs], dtype=float)
            row[m], row[m + "_sd"] = float(v.mean()), float(v.std())
            row[m + " ± sd"] = f"{v.mean():.3f} ± {v.std():.3f}"
            row[m + "_per_seed"] = v.tolist()
        for extra in rs[0]:
            if extra not in row and extra not in metrics and extra != "seed":
                row[extra] = rs[0][extra]
        out.append(row)
    return out
