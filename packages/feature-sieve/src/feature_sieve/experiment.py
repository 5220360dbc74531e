"""One toy debiasing run (dataset x method x seed) as used by the benchmark, the CLI and the slow test.

Every method trains the same `SmallCNN` from the same seeded initialisation on the same batches
(`feature_sieve.train` batches are a function of the seed), for the same number of steps, and is
evaluated at the last step (no model selection, so no group labels leak in; DESIGN.md pitfall 8).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .diagnostics import AuxEntropyTracker, shortcut_probe
from .jtt import run_jtt
from .losses import forget_loss_wrong_sign
from .methods import ERM, GroupDRO, Method
from .models import SmallCNN
from .sieve import FeatureSieve
from .train import evaluate, fit, group_counts

METHODS = ("erm", "sieve", "jtt", "group_dro", "wrong_sign")


@dataclass
class ToyConfig:
    """Hyper-parameters of the toy runs (shared by every method where they apply)."""

    steps: int = 400
    batch_size: int = 64
    width: int = 8
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    sieve_layer: str = "conv1"
    aux_head: str = "linear"
    aux_depth: int = 1
    aux_width: int = 16
    aux_pool: str = "avg"
    forget_every: int = 3
    forget_lr: float = 0.02
    aux_lr: float = 0.05
    jtt_identify_frac: float = 0.25
    jtt_upweight: float = 20.0
    dro_eta: float = 0.05
    probe_pool: str = "avg"
    extra: dict[str, Any] = field(default_factory=dict)


def _sieve_kwargs(cfg: ToyConfig) -> dict:
    return dict(
        aux_head=cfg.aux_head,
        aux_depth=cfg.aux_depth,
        aux_width=cfg.aux_width,
        aux_pool=cfg.aux_pool,
        forget_every=cfg.forget_every,
        forget_lr=cfg.forget_lr,
        aux_lr=cfg.aux_lr,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )


def run_one(
    data: dict,
    method: str,
    seed: int,
    cfg: ToyConfig,
    track_entropy: bool = False,
    select: str = "last",
    eval_every: int | None = None,
    device=None,
) -> dict:
    """Train ``method`` on ``data`` (train/validation/test TensorDatasets) and measure it.

    ``select="last"`` evaluates the last step; ``select="val_wga"`` evaluates on validation every
    ``eval_every`` steps and keeps the step with the best validation worst-group accuracy (ties: the
    later step), which is then measured on test. Test data never influences training or selection.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if select not in ("last", "val_wga"):
        raise ValueError(f"select must be 'last' or 'val_wga', got {select!r}")
    train, test = data["train"], data["test"]
    x0 = train.tensors[0]
    torch.manual_seed(seed)
    model = SmallCNN(x0.shape[1], 2, cfg.width, tuple(x0.shape[2:]))
    main: dict[str, Any] = dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    fit_kw: dict[str, Any] = dict(
        batch_size=cfg.batch_size, selector="last", seed=seed, progress=False, device=device
    )
    if select == "val_wga":
        fit_kw.update(selector="val_wga", val=data["validation"], eval_every=eval_every)
    tracker = None
    t0 = time.perf_counter()
    steps_run = cfg.steps
    m: Method
    if method == "erm":
        m = ERM(model, 2, **main)
        hist = fit(m, train, cfg.steps, **fit_kw)
    elif method == "group_dro":
        m = GroupDRO(model, 2, n_groups=4, eta=cfg.dro_eta, **main)
        hist = fit(m, train, cfg.steps, **fit_kw)
    elif method == "jtt":
        ident = max(1, int(cfg.jtt_identify_frac * cfg.steps))
        m, hist, _ = run_jtt(model, 2, train, cfg.steps, ident, cfg.jtt_upweight, erm_kwargs=main, **fit_kw)
        steps_run = cfg.steps + ident
    else:
        kw = _sieve_kwargs(cfg)
        if method == "wrong_sign":
            kw["forget_loss"] = forget_loss_wrong_sign
        m = FeatureSieve(model, cfg.sieve_layer, 2, x0[:2], aux_seed=seed, **kw)
        cbs = []
        if track_entropy:
            xt, yt = test.tensors[0][:256], test.tensors[1][:256]
            tracker = AuxEntropyTracker(xt, yt, every=max(1, cfg.steps // 40))
            cbs.append(tracker)
        hist = fit(m, train, cfg.steps, callbacks=cbs, **fit_kw)
    seconds = time.perf_counter() - t0
    ev = evaluate(m.model, test, 4, group_counts(train, 4).tolist())
    xt, gt = test.tensors[0], test.tensors[2]
    # scale-invariant probes (standardised features): decodability, not weight scale (issue 18)
    probe = shortcut_probe(m.model, cfg.sieve_layer, xt, gt % 2, seed=seed, pool=cfg.probe_pool)
    label_probe = shortcut_probe(
        m.model, cfg.sieve_layer, xt, test.tensors[1], seed=seed, pool=cfg.probe_pool
    )
    # the old default (raw features, C=0.01): scale-dependent, kept only as a labelled diagnostic
    probe_raw = shortcut_probe(
        m.model, cfg.sieve_layer, xt, gt % 2, seed=seed, pool=cfg.probe_pool, standardize=False, C=0.01
    )
    out = {
        "method": method,
        "seed": seed,
        "avg_acc": ev["avg_acc"],
        "weighted_avg_acc": ev["weighted_avg_acc"],
        "mean_group_acc": ev["mean_group_acc"],
        "worst_group_acc": ev["worst_group_acc"],
        "shortcut_probe": probe,
        "shortcut_probe_raw": probe_raw,
        "label_probe": label_probe,
        "best_step": int(hist.best_step),
        "val_worst_group_acc": float(hist.best_score) if select == "val_wga" else None,
        "seconds": seconds,
        "sec_per_step": seconds / steps_run,
        "sec_per_main_step": seconds / cfg.steps,
    }
    if tracker is not None:
        out["entropy_curve"] = (tracker.steps, tracker.entropy)
    return out


def step_costs(data: dict, cfg: ToyConfig, repeats: int = 5) -> dict[str, float]:
    """Wall time per training step relative to ERM, timed interleaved on one batch (min over repeats).

    JTT's per-step cost equals ERM's; its total cost is ``1 + jtt_identify_frac`` times ERM's (stage 1).
    """
    train = data["train"]
    x, y, g, i = (t[: cfg.batch_size] for t in train.tensors)
    main: dict[str, Any] = dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    shape = tuple(x.shape[1:])

    def model() -> SmallCNN:
        torch.manual_seed(0)
        return SmallCNN(shape[0], 2, cfg.width, shape[1:])

    kw = _sieve_kwargs(cfg)
    methods = {
        "erm": ERM(model(), 2, **main),
        "group_dro": GroupDRO(model(), 2, n_groups=4, eta=cfg.dro_eta, **main),
        "sieve": FeatureSieve(model(), cfg.sieve_layer, 2, x[:2], **kw),
        "wrong_sign": FeatureSieve(
            model(), cfg.sieve_layer, 2, x[:2], forget_loss=forget_loss_wrong_sign, **kw
        ),
    }
    n = 4 * max(1, cfg.forget_every)  # a whole number of forget periods
    best = {k: float("inf") for k in methods}
    for r in range(repeats + 1):
        for k, m in methods.items():
            t0 = time.perf_counter()
            for s in range(n):
                m.training_step(x, y, s, group=g, index=i)
            if r:  # round 0 is warm-up
                best[k] = min(best[k], (time.perf_counter() - t0) / n)
    out = {k: v / best["erm"] for k, v in best.items()}
    out["jtt"] = 1.0 + cfg.jtt_identify_frac
    return out
