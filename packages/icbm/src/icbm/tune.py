"""Choosing CooP's weights on the validation split [DESIGN.md §1.3 defaults, pitfalls 10-11].

Grid search over alpha x beta x gamma; the criterion is the mean validation accuracy over
k = 1..budget (the area under the curve without the policy-independent k = 0 point). CEM's
`fine_tune_coop` uses the same grid idea (weights 1 - k/K); we keep the plain mean for clarity.
Never tune on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .evaluate import evaluate_interventions
from .policies.scored import CooP, Influence, Uncertainty
from .training import predict_concept_logits


@dataclass
class TuneResult:
    policy: CooP
    rows: list[dict]

    @property
    def best(self) -> dict:
        return max(self.rows, key=lambda r: r["val_score"])


def tune_coop(
    model,
    val_data,
    *,
    betas: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
    gammas: Sequence[float] = (0.0,),
    alphas: Sequence[float] = (1.0,),
    budget: int = 5,
    cost_budget: float | None = None,
    uncertainty: Uncertainty | None = None,
    influence: Influence | None = None,
) -> TuneResult:
    """Grid-search CooP weights on validation; ties keep the first grid point (stable)."""
    if budget < 1:
        raise ValueError(f"tuning needs budget >= 1, got {budget}")
    budget = min(budget, len(model.groups))
    from .data.dataset import collect

    data = collect(val_data)
    logits = predict_concept_logits(model, data)
    rows, best, best_score = [], None, -float("inf")
    for a in alphas:
        for b in betas:
            for g in gammas:
                pol = CooP(beta=b, gamma=g, alpha=a, uncertainty=uncertainty, influence=influence)
                curve = evaluate_interventions(
                    model, data, pol, budget, cost_budget=cost_budget, concept_logits=logits
                )
                score = float(curve.accuracy[1:].mean())
                rows.append({"alpha": a, "beta": b, "gamma": g, "val_score": score})
                if score > best_score + 1e-12:
                    best, best_score = pol, score
    if best is None:
        raise ValueError("tune_coop: the grid is empty (give at least one alpha, beta and gamma)")
    return TuneResult(best, rows)


__all__ = ["TuneResult", "tune_coop"]
