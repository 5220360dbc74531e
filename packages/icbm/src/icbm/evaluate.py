"""Simulated interventions over a split: accuracy after k = 0..T interactions [DESIGN.md §1.5].

The simulated human answers with the ground-truth concepts of the asked group; where the
annotation is "not visible" it answers "don't know" and, by default, the query is spent while
the model's prediction is kept for those concepts (official `include_uncertain=False`;
``unknown="set_zero"`` follows Koh's `-use_invisible` instead) [DESIGN.md §1.2, pitfall 7]. The policy only
ever sees an `InteractionState` (answers already given), except the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.dataset import collect
from .model import ConceptBottleneckModel, label_probs, predicted_class
from .policies.base import Policy
from .state import InteractionState
from .training import predict_concept_logits


@dataclass
class InterventionCurve:
    """Per-step results. Arrays are indexed by k = 0..T (k = number of interactions)."""

    policy: str
    k: np.ndarray
    accuracy: np.ndarray
    mean_cost: np.ndarray
    correct: np.ndarray = field(repr=False)  # (N, T+1) bool
    spent: np.ndarray = field(repr=False)  # (N, T+1) cumulative cost
    queries: np.ndarray = field(repr=False)  # (N, T) group index, -1 = nothing asked
    true_class_prob: np.ndarray = field(repr=False)  # (N, T+1)

    def auc(self) -> float:
        """Normalised area under the accuracy curve for k = 0..T (the mean accuracy)."""
        return float(self.accuracy.mean())

    def accuracy_at_cost(self, budgets) -> np.ndarray:
        """Accuracy when each instance stops before its cumulative cost would exceed a budget."""
        out = []
        for b in np.atleast_1d(budgets):
            ok = self.spent <= b + 1e-9  # steps still affordable (prefix, as costs are positive)
            last = ok.sum(1) - 1
            out.append(self.correct[np.arange(len(last)), last].mean())
        return np.asarray(out)

    def rows(self) -> list[dict]:
        return [
            {"policy": self.policy, "k": int(k), "accuracy": float(a), "mean_cost": float(c)}
            for k, a, c in zip(self.k, self.accuracy, self.mean_cost)
        ]


@torch.no_grad()
def evaluate_interventions(
    model: ConceptBottleneckModel,
    dataset,
    policy: Policy,
    budget: int,
    *,
    cost_budget: float | None = None,
    unknown: str = "keep_prediction",
    batch_size: int = 1024,
    concept_logits: torch.Tensor | None = None,
    progress: bool = False,
) -> InterventionCurve:
    """Run `policy` for `budget` interactions on every instance of `dataset` (x, c, y[, visible]).

    `concept_logits` may be passed to skip the encoder (it runs once per instance anyway).
    A budget larger than the number of groups is an error; rows with nothing affordable left under
    `cost_budget` stop early.
    """
    groups = model.groups
    if not isinstance(budget, int) or budget < 0:
        raise ValueError(f"budget must be a non-negative int, got {budget!r}")
    if budget > len(groups):
        raise ValueError(f"budget {budget} is larger than the number of concept groups ({len(groups)})")
    if unknown not in ("keep_prediction", "set_zero"):
        raise ValueError(f"unknown must be 'keep_prediction' or 'set_zero', got {unknown!r}")
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be an icbm Policy, got {type(policy).__name__}")
    model.eval()
    x, c, y, vis = collect(dataset)
    if c.shape[1] != model.n_concepts:
        raise ValueError(
            f"concept count mismatch: data have {c.shape[1]} concepts, model expects {model.n_concepts}"
        )
    if concept_logits is None:
        concept_logits = predict_concept_logits(model, (x, c, y, vis))
    dev = next(model.parameters()).device
    policy.reset()
    n = len(y)
    correct = np.zeros((n, budget + 1), dtype=bool)
    spent = np.zeros((n, budget + 1))
    tcp = np.zeros((n, budget + 1))
    queries = np.full((n, budget), -1, dtype=np.int64)
    starts = range(0, n, batch_size)
    for s in tqdm(
        starts, desc=f"icbm: {getattr(policy, 'name', 'policy')}", disable=not progress, leave=False
    ):
        sl = slice(s, s + batch_size)
        cb, yb, vb = c[sl].to(dev), y[sl].to(dev), vis[sl].to(dev)
        state = InteractionState.initial(model, concept_logits[sl].to(dev), cost_budget)
        truth = (cb, yb, vb) if policy.requires_ground_truth else None

        def record(t, st, sl=sl, yb=yb):
            lg = st.label_logits
            correct[sl, t] = (predicted_class(lg) == yb).cpu().numpy()
            tcp[sl, t] = label_probs(lg).gather(1, yb[:, None])[:, 0].cpu().numpy()
            spent[sl, t] = st.spent.cpu().numpy()

        record(0, state)
        for t in range(1, budget + 1):
            choice = policy.select(state, truth=truth) if truth is not None else policy.select(state)
            known = vb if unknown == "keep_prediction" else None
            answers = cb if unknown == "keep_prediction" else cb * vb
            state = state.reveal(choice, answers, known)
            queries[sl, t - 1] = choice.cpu().numpy()
            record(t, state)
    return InterventionCurve(
        policy=getattr(policy, "name", type(policy).__name__),
        k=np.arange(budget + 1),
        accuracy=correct.mean(0),
        mean_cost=spent.mean(0),
        correct=correct,
        spent=spent,
        queries=queries,
        true_class_prob=tcp,
    )
