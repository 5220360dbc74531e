"""The SpuriousDigits distillation experiment behind the benchmark, the slow test and `early-readout smoke`.

One run = one data seed: build SpuriousDigits (train P(a=y)=rho, decorrelated val/test), train (or load
from the cache) an ERM teacher that fits the training set, then distil into a strongly regularised
small student with one of four weightings:

* ``kd``: plain KD (all weights 1);
* ``early_readout``: the paper's method (readout on the student's ``layer1``, refreshed every epoch);
* ``random``: control: as many examples up-weighted, with the same weight values, chosen at random;
* ``oracle``: group-balanced weights ``N / (G * n_g)`` from the training group labels (upper bound).

Model selection is by validation worst-group accuracy for every method (as the official code selects by
validation group accuracy; DESIGN.md §1.6, §6.9).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from paperworks_shared.cache import get_or_build
from paperworks_shared.repro import seed_everything

from .analysis import minority_groups, readout_analysis
from .batches import TensorLoader
from .data import load_splits
from .distill import EarlyReadoutDistiller
from .models import build_model
from .teacher import compute_logits, train_teacher

METHODS = ("kd", "early_readout", "random", "oracle")


@dataclass
class Settings:
    dataset: str = "spurious-digits"
    train_correlation: float = 0.95
    kind: str = "patch"
    teacher: str = "mlp-teacher"
    teacher_method: str = "erm"
    teacher_epochs: int = 80
    teacher_lr: float = 0.05
    student: str = "mlp-tiny"
    readout_layer: str = "layer1"
    readout_head: str = "auto"
    epochs: int = 60
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 1e-2
    temperature: float = 3.0
    weight_fn: str = "exp_pow"
    alpha: float | None = None
    beta: float | None = None
    normalize: str = "batch"
    readout_lr: float | None = 0.05
    readout_epochs: int = 2
    selector: str = "val_wga"


def group_balanced_weights(groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """``N / (G * n_g)`` per example: every group gets the same total weight (the oracle)."""
    counts = torch.bincount(groups.long(), minlength=n_groups).float()
    present = int((counts > 0).sum())
    return len(groups) / (present * counts[groups.long()])


def get_teacher_logits(s: Settings, seed: int, splits, progress: bool = False) -> torch.Tensor:
    """Teacher logits on the training set by dataset index, trained once per (settings, seed) and cached."""
    key = {
        "what": "early-readout-teacher",
        "version": 2,
        "seed": seed,
        **{k: v for k, v in asdict(s).items() if k.startswith(("teacher", "dataset", "train_corr", "kind"))},
    }

    def build(staging):
        # runs once per key: concurrent callers wait on the cache's file lock; the folder is published
        # by an atomic rename, so no reader ever sees half-written logits
        seed_everything(seed)
        model = build_model(s.teacher, splits.input_shape, splits.num_classes)
        gen = torch.Generator().manual_seed(seed)
        dl = TensorLoader(splits.train, batch_size=s.batch_size, shuffle=True, generator=gen)
        train_teacher(
            model,
            dl,
            s.teacher_epochs,
            s.teacher_method,
            lr=s.teacher_lr,
            n_groups=splits.n_groups,
            progress=progress,
        )
        logits = compute_logits(model, TensorLoader(splits.train, batch_size=512), len(splits.train))
        torch.save(logits, staging / "train_logits.pt")
        torch.save(model.state_dict(), staging / "teacher.pt")

    path, _ = get_or_build("early-readout", key, build)
    return torch.load(path / "train_logits.pt", weights_only=True)


def run_method(method: str, seed: int, s: Settings, splits=None, progress: bool = False, device=None) -> dict:
    """Distil with one weighting for one seed; returns test metrics, readout analysis and timings."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    splits = splits or load_splits(s.dataset, seed=seed, train_correlation=s.train_correlation, kind=s.kind)
    t_logits = get_teacher_logits(s, seed, splits)
    seed_everything(seed + 1000)
    student = build_model(s.student, splits.input_shape, splits.num_classes)
    d = EarlyReadoutDistiller(
        t_logits,
        student,
        splits.num_classes,
        len(splits.train),
        readout_layer=s.readout_layer,
        readout_head=s.readout_head,
        temperature=s.temperature,
        weight_fn=s.weight_fn,
        alpha=s.alpha,
        beta=s.beta,
        normalize=s.normalize,
        readout_lr=s.readout_lr,
        readout_epochs=s.readout_epochs,
        reweigh_every=1 if method in ("early_readout", "random") else 0,
        control="random" if method == "random" else None,
        seed=seed,
        device=device,
    )
    train_groups = splits.train_groups
    if method == "oracle":
        d.set_weights(group_balanced_weights(train_groups, splits.n_groups))
    gen = torch.Generator().manual_seed(seed)
    train_dl = TensorLoader(splits.train, batch_size=s.batch_size, shuffle=True, generator=gen)
    val_dl = TensorLoader(splits.validation, batch_size=512)
    test_dl = TensorLoader(splits.test, batch_size=512)
    t0 = time.perf_counter()
    hist = d.fit(
        train_dl,
        s.epochs,
        lr=s.lr,
        weight_decay=s.weight_decay,
        val_loader=val_dl,
        selector=s.selector,
        n_groups=splits.n_groups,
        progress=progress,
    )
    wall = time.perf_counter() - t0
    train_counts = torch.bincount(train_groups.long(), minlength=splits.n_groups)
    test = d.evaluate(test_dl, splits.n_groups, train_counts)
    out = {
        "method": method,
        "seed": seed,
        "test_avg": test["avg"],
        "test_weighted_avg": test["weighted_avg"],
        "test_worst_group_acc": test["worst_group_acc"],
        "test_mean_group": test["mean_group"],
        "lr": s.lr,
        "epochs": s.epochs,
        "best_epoch": hist.best_epoch,
        # the selection score of the restored epoch (validation worst-group accuracy by default): what
        # picks the learning rate in the benchmark's grid, never a test number
        "val_selection_score": hist.best_score,
        "seconds_per_epoch": wall / s.epochs,
        "distill_seconds_per_epoch": sum(e["distill_seconds"] for e in hist.epochs) / s.epochs,
        "readout_seconds_per_epoch": sum(e["readout_seconds"] for e in hist.epochs) / s.epochs,
    }
    if hist.reweighs:
        minority = minority_groups(train_groups, splits.n_groups)
        shares, recalls, fracs, up_shares = [], [], [], []
        for r in hist.reweighs:
            wrong = torch.zeros(len(splits.train), dtype=torch.bool)
            wrong[r["wrong_idx"]] = True
            a = readout_analysis(wrong, train_groups, minority)
            shares.append(a["minority_share_of_wrong"])
            recalls.append(a["minority_recall"])
            fracs.append(a["frac_wrong"])
            up = torch.zeros(len(splits.train), dtype=torch.bool)
            up[r["upweighted_idx"]] = True
            up_shares.append(readout_analysis(up, train_groups, minority)["minority_share_of_wrong"])
        first = hist.reweighs[0]
        out.update(
            upweighted_minority_share_first=up_shares[0],
            readout_minority_share_first=shares[0],
            readout_minority_share_mean=float(torch.tensor(shares).nanmean()),
            readout_minority_recall_first=recalls[0],
            readout_frac_wrong_mean=float(torch.tensor(fracs).mean()),
            minority_base_rate=a["minority_base_rate"],
            n_wrong_first=len(first["wrong_idx"]),
        )
    return out
