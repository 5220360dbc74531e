"""The simulation study (DESIGN.md §3.2, E1/E2): every method on the same simulated problems, with
accuracy of picking a correct candidate, calls, tokens, sequential rounds and scheduler overhead."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from .baselines import make_selector
from .config import TournamentConfig
from .driver import run_selectors
from .judges.simulated import SimulatedPairwiseJudge, SimulatedPointwiseJudge, simulate_problems


@dataclass(frozen=True)
class MethodSpec:
    """One row of the study: a method name, its budget multiplier and extra keyword arguments."""

    label: str
    method: str
    budget_multiplier: float = 1.0
    kwargs: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def default_methods(budgets=(1, 2, 3)) -> list[MethodSpec]:
    """V1 and the baselines at equal verifier calls (N=16: 1x = 16, 2x = 32, 3x = 48 calls)."""
    specs = [MethodSpec("Pass@1 (random pick)", "random_pick"), MethodSpec("majority vote", "majority")]
    specs += [
        MethodSpec("pointwise BoN (index tie-break)", "pointwise"),
        MethodSpec("pointwise BoN (random tie-break)", "pointwise", kwargs={"tiebreak": "random"}),
    ]
    for b in budgets:
        if b > 1:
            specs.append(
                MethodSpec(f"pointwise x{b} ratings (= {b}x calls)", "pointwise", kwargs={"repeats": b})
            )
    for b in budgets:
        specs.append(MethodSpec(f"V1 {b}x", "v1", b))
        specs.append(MethodSpec(f"random pairing {b}x", "random_pairing", b))
    specs.append(MethodSpec(f"Bradley-Terry (random pairs) {max(budgets)}x", "bradley_terry", max(budgets)))
    specs += [
        MethodSpec("knockout k=1", "knockout", kwargs={"k": 1}),
        MethodSpec("knockout k=3", "knockout", kwargs={"k": 3}),
        MethodSpec("round robin (all pairs)", "round_robin"),
    ]
    specs.append(
        MethodSpec(
            f"V1 {max(budgets)}x, main-text sign (bug)", "v1", max(budgets), config={"sign": "main_text"}
        )
    )
    return specs


def run_study(
    num_problems: int = 600,
    n: int = 16,
    p: float | str = "beta",
    methods: list[MethodSpec] | None = None,
    *,
    seed: int = 0,
    judge_kwargs: dict | None = None,
    point_judge_kwargs: dict | None = None,
    config: TournamentConfig | None = None,
    wrong_answers: str = "clustered",
) -> list[dict]:
    """Run every method on the same ``num_problems`` mixed problems; one row per method."""
    methods = methods or default_methods()
    problems = simulate_problems(num_problems, n, p, seed=seed, wrong_answers=wrong_answers)
    texts = [q for q, _ in problems]
    cands = [c for _, c in problems]
    correct = [np.array([c.meta["correct"] for c in cs]) for cs in cands]
    pass1 = float(np.mean([y.mean() for y in correct]))
    pass_n = float(np.mean([y.any() for y in correct]))
    base = config or TournamentConfig()
    rows = []
    for spec in methods:
        cfg = replace(base, budget_multiplier=spec.budget_multiplier, **spec.config)
        sels = [
            make_selector(spec.method, cs, cfg, seed=seed * 100003 + k, **spec.kwargs)
            for k, cs in enumerate(cands)
        ]
        pj = SimulatedPairwiseJudge(seed=seed + 1, **(judge_kwargs or {}))
        qj = SimulatedPointwiseJudge(seed=seed + 2, **(point_judge_kwargs or {}))
        t0 = time.perf_counter()
        res = run_selectors(sels, texts, cands, pj, qj)
        wall = time.perf_counter() - t0
        hits = np.array([y[r.best_index] for y, r in zip(correct, res)], dtype=float)
        if spec.method == "random_pick":  # report the exact expectation, not one noisy draw
            acc = pass1
        else:
            acc = float(hits.mean())
        rows.append(
            {
                "method": spec.label,
                "accuracy": acc,
                "se": float(hits.std(ddof=1) / np.sqrt(len(hits))) if len(hits) > 1 else 0.0,
                "gap_closure": (acc - pass1) / (pass_n - pass1) if pass_n > pass1 else float("nan"),
                "calls": float(np.mean([r.calls for r in res])),
                "rounds": float(np.mean([r.rounds for r in res])),
                "in_tokens_k": float(np.mean([r.input_tokens for r in res])) / 1000,
                "out_tokens_k": float(np.mean([r.output_tokens for r in res])) / 1000,
                "overhead_ms": 1000 * wall / len(res),
            }
        )
    for r in rows:
        r["pass@1"], r["pass@N"] = pass1, pass_n
    return rows
