"""Reusable experiment pieces for the benchmark, the CLI demo and the slow tests.

`train_synthetic` trains (once, cached under $PAPERWORKS_CACHE/icbm-synthetic) an independent CBM
with a linear encoder and a linear head on the occluded-concepts task, as in DESIGN.md's E1/E2
prototypes; `compare_policies` runs every policy on the test split and returns the curves.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import torch

from .data.synthetic import OccludedConceptsTask
from .evaluate import InterventionCurve, evaluate_interventions
from .model import linear_cbm
from .policies import (
    ExpectedInformationGain,
    Influence,
    OracleGreedy,
    Random,
    StaticGreedy,
    Uncertainty,
)
from .training import fit, predict_concept_logits
from .tune import tune_coop

POLICY_ORDER = (
    "random",
    "random-fixed",
    "static-greedy",
    "uncertainty",
    "influence",
    "coop",
    "eig",
    "oracle",
)


def train_synthetic(
    task: OccludedConceptsTask,
    sizes=(4000, 1000, 2000),
    split_seed: int = 0,
    epochs: int = 60,
    lr: float = 1e-2,
    cache: bool = True,
):
    """(model, train, val, test) for `task`; the trained weights are cached on disk."""
    tr, va, te = task.splits(sizes[0], sizes[1], sizes[2], seed=split_seed)
    model = linear_cbm(task.in_features, task.groups, task.n_classes)
    key = {
        "v": 1,
        "task": {k: v for k, v in asdict(task).items() if k != "group_spec"},
        "spec": [list(s) for s in task.group_spec],
        "sizes": list(sizes),
        "split_seed": split_seed,
        "epochs": epochs,
        "lr": lr,
    }

    def train() -> torch.nn.Module:
        torch.manual_seed(split_seed)
        m = linear_cbm(task.in_features, task.groups, task.n_classes)
        fit(m, tr, epochs=epochs, lr=lr, seed=split_seed)
        return m

    if not cache:
        return train(), tr, va, te
    from paperworks_shared.cache import get_or_build

    # one builder at a time (file lock), private staging folder, atomic publish: concurrent callers
    # wait for the first one's model instead of racing on a shared temp path
    path, _ = get_or_build(
        "icbm-synthetic", key, lambda staging: torch.save(train().state_dict(), staging / "model.pt")
    )
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    model.eval()
    return model, tr, va, te


def standard_policies(model, val, budget: int, betas=(0.1, 1.0, 10.0, 100.0), random_seeds=(0, 1, 2, 3, 4)):
    """name -> policy (or list of seeded policies for the random baselines), fitted/tuned on `val`."""
    tuned = tune_coop(model, val, betas=betas, budget=min(5, budget))
    return {
        "random": [Random(seed=s) for s in random_seeds],
        "random-fixed": [Random(seed=s, per_instance=False) for s in random_seeds],
        "static-greedy": StaticGreedy.fit(model, val, n_steps=budget),
        "uncertainty": Uncertainty(),
        "influence": Influence(),
        "coop": tuned.policy,
        "eig": ExpectedInformationGain(),
        "oracle": OracleGreedy(),
    }, tuned


def run_policies(model, test, policies: dict, budget: int) -> dict[str, dict]:
    """name -> {"accuracy": mean curve (random: averaged over seeds, never the max), "ms_per_step": ...}."""
    logits = predict_concept_logits(model, test)
    out = {}
    for name, pol in policies.items():
        pols = pol if isinstance(pol, list) else [pol]
        curves: list[InterventionCurve] = []
        t0 = time.perf_counter()
        for p in pols:
            curves.append(evaluate_interventions(model, test, p, budget, concept_logits=logits))
        secs = (time.perf_counter() - t0) / max(1, len(pols) * budget)
        acc = sum(c.accuracy for c in curves) / len(curves)
        out[name] = {
            "accuracy": acc,
            "ms_per_step": 1000 * secs,
            "us_per_decision": 1e6 * secs / len(logits),
            "curves": curves,
        }
    return out
