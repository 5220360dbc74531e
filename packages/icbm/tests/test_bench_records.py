"""Issue 19: the cost-aware comparison is paired over seeds with verdicts from stats.compare, the
cost-aware arm's gamma is chosen on validation, and every experiment name is kebab-case."""

import re

import numpy as np
import pytest

from icbm import bench


def _seed(seed, areas):
    return {
        "seed": seed,
        "curves": {n: np.full(len(bench.COST_GRID), a) for n, a in areas.items()},
        "tuned_gamma": 2.0,
    }


def test_cost_headlines_pair_by_seed_and_compute_verdicts():
    per_seed = [
        _seed(0, {"coop gamma=0": 0.80, "coop gamma=tuned": 0.805, "random": 0.70}),
        _seed(1, {"coop gamma=0": 0.82, "coop gamma=tuned": 0.821, "random": 0.71}),
        _seed(2, {"coop gamma=0": 0.81, "coop gamma=tuned": 0.812, "random": 0.69}),
    ]
    tuned, vs_random = bench.cost_headlines(per_seed)
    assert tuned["verdict"] == "equivalent" and tuned["delta"] == bench.COST_DELTA
    assert tuned["method"] == pytest.approx([0.805, 0.821, 0.812])
    assert tuned["baseline"] == pytest.approx([0.80, 0.82, 0.81])
    assert tuned["diff_mean"] == pytest.approx((0.005 + 0.001 + 0.002) / 3)
    assert vs_random["verdict"] == "holds" and vs_random["seeds"] == [0, 1, 2]
    assert vs_random["diff_mean"] == pytest.approx((0.10 + 0.11 + 0.12) / 3)


def test_one_seed_is_never_a_verdict():
    (h, _) = bench.cost_headlines([_seed(0, {"coop gamma=0": 0.5, "coop gamma=tuned": 0.9, "random": 0.1})])
    assert h["verdict"] == "underpowered" and h["n_seeds"] == 1


def test_gamma_is_selected_on_validation_not_test(monkeypatch):
    """The tuned gamma is the validation argmax even when another gamma is best on test."""
    calls = []

    class FakeCurve:
        def __init__(self, split, gamma):
            self.split, self.gamma = split, gamma

        def accuracy_at_cost(self, grid):
            best = 5.0 if self.split == "val" else 20.0
            return np.full(len(grid), 0.9 if self.gamma == best else 0.5)

    def fake_eval(model, data, policy, budget, concept_logits=None):
        calls.append(data)
        return FakeCurve(data, getattr(policy, "gamma", None))

    monkeypatch.setattr(bench, "train_synthetic", lambda *a, **k: (None, "tr", "val", "test"))
    monkeypatch.setattr(bench, "predict_concept_logits", lambda m, d: None)
    monkeypatch.setattr(bench, "evaluate_interventions", fake_eval)
    out = bench._e4_seed(0, (40, 10, 20), 1, budget=3)
    assert out["tuned_gamma"] == 5.0
    assert np.all(out["curves"]["coop gamma=tuned"] == out["curves"]["coop gamma=5"])
    assert "val" in calls and "test" in calls


def test_experiment_names_are_kebab_case():
    import inspect

    src = inspect.getsource(bench)
    names = re.findall(r'ctx\.record\(\s*"([^"]+)"', src)
    assert len(names) == 5
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names), names
