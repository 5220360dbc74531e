"""Issue 19: the benchmark's protocol (same grid and budget per arm, validation-only selection, paired
headlines with a fixed margin, convergence), checked on fixed numbers and on a tiny real run."""

from __future__ import annotations

import json

import pytest

from feature_sieve import bench


def _row(method, lr, seed, val, test, best_step=10):
    return {
        "method": method,
        "lr": lr,
        "seed": seed,
        "val_worst_group_acc": val,
        "worst_group_acc": test,
        "best_step": best_step,
    }


def test_selection_reads_validation_only_and_breaks_ties_to_the_smaller_lr():
    rows = []
    for s in range(3):
        rows += [
            _row("erm", 0.02, s, val=0.50, test=0.90),  # best on test, not on validation
            _row("erm", 0.05, s, val=0.60, test=0.40),
            _row("erm", 0.1, s, val=0.55, test=0.95),
            _row("sieve", 0.02, s, val=0.70, test=0.10),
            _row("sieve", 0.05, s, val=0.70, test=0.99),  # tie on validation: the smaller lr wins
        ]
    sel = bench.select(rows, arms=("erm", "sieve"))
    assert sel["erm"]["lr"] == 0.05 and sel["sieve"]["lr"] == 0.02
    assert [r["seed"] for r in sel["erm"]["runs"]] == [0, 1, 2]
    assert sel["erm"]["val_by_lr"] == pytest.approx({0.02: 0.50, 0.05: 0.60, 0.1: 0.55})


def test_selection_uses_the_mean_over_seeds():
    rows = [
        _row("erm", 0.02, 0, val=0.9, test=0.0),
        _row("erm", 0.02, 1, val=0.1, test=0.0),  # mean 0.5
        _row("erm", 0.05, 0, val=0.6, test=0.0),
        _row("erm", 0.05, 1, val=0.5, test=0.0),  # mean 0.55: wins although seed 0 prefers 0.02
    ]
    assert bench.select(rows, arms=("erm",))["erm"]["lr"] == 0.05


def _sel(method_vals, base_vals, seeds=None):
    seeds = seeds or list(range(len(method_vals)))
    return {
        "sieve": {"lr": 0.05, "runs": [_row("sieve", 0.05, s, 0, v) | {"avg_acc": v} for s, v in zip(seeds, method_vals)]},
        "erm": {"lr": 0.05, "runs": [_row("erm", 0.05, s, 0, v) | {"avg_acc": v} for s, v in zip(range(len(base_vals)), base_vals)]},
    }  # fmt: skip


def test_headlines_are_paired_with_the_fixed_margin():
    heads = bench.headlines(_sel([0.6, 0.7, 0.65, 0.62], [0.5, 0.55, 0.6, 0.5]))
    wga = next(h for h in heads if h["metric"] == "worst_group_acc")
    assert wga["comparison"] == "sieve vs erm" and wga["n_seeds"] == 4
    assert wga["delta"] == bench.DELTA_WGA == 0.03
    assert wga["diff_mean"] == pytest.approx((0.1 + 0.15 + 0.05 + 0.12) / 4)
    assert wga["verdict"] == "holds" and wga["ci_low"] > 0
    avg = next(h for h in heads if h["metric"] == "avg_acc")
    assert avg["delta"] == bench.DELTA_AVG
    rev = next(h for h in bench.headlines(_sel([0.5, 0.55, 0.6, 0.5], [0.6, 0.7, 0.65, 0.62])))
    assert rev["verdict"] == "reversed"


def test_headlines_refuse_unpaired_runs():
    with pytest.raises(ValueError, match="not paired by seed"):
        bench.headlines(_sel([0.6, 0.7], [0.5, 0.55], seeds=[0, 2]))


def test_plans_give_every_arm_the_same_grid_and_a_powered_full_tier():
    full, cpu = bench.plan("full"), bench.plan("cpu")
    assert full["seeds"] >= 3 and len(full["lr_grid"]) >= 3 and full["steps"] >= 2000
    assert cpu["seeds"] >= 3
    assert set(bench.plan("smoke")) == set(full) == {"lr_grid", "seeds", "steps", "workers"}


def test_tiny_benchmark_run_writes_headlines_convergence_and_grids(tmp_path, monkeypatch):
    from paperworks_shared.bench import BenchContext

    monkeypatch.setattr(bench, "plan", lambda scale: dict(lr_grid=[0.05], seeds=2, steps=12, workers=1))
    monkeypatch.setattr(bench, "N_EVALS", 4)
    ctx = BenchContext("feature-sieve", "smoke", tmp_path)
    bench.run(ctx)
    rec = json.loads((tmp_path / "feature-sieve" / "debias-spurious-digits.json").read_text())
    arms = set(bench.ARMS)
    assert set(rec["convergence"]) == arms
    assert all(c["budget"] == 12 and len(c["best_steps"]) == 2 for c in rec["convergence"].values())
    grids = rec["params"]["grids"]
    assert set(grids) == arms and all(g == {"lr": [0.05]} for g in grids.values())
    assert "never test" in rec["params"]["selection"]
    names = {h["comparison"] for h in rec["headlines"]}
    assert {"sieve vs erm", "wrong_sign vs erm", "sieve vs jtt", "sieve vs group_dro"} <= names
    assert all(h["n_seeds"] == 2 for h in rec["headlines"])
    assert {r["method"] for r in rec["rows"]} == arms
    assert all("worst_group_acc" in r and "wga" not in r for r in rec["rows"])
