"""The benchmark's plumbing: the per-run cache key, learning-rate selection on validation, the plan."""

import pytest

import early_readout.bench as bench
from early_readout.experiment import Settings


def test_every_grid_point_is_its_own_cached_run(tmp_path, monkeypatch):
    """Regression: the base settings' lr shadowed the grid's lr in the cache key, so every lr of the
    grid returned the first lr's run (a silent 1-point 'grid')."""
    monkeypatch.setenv("PAPERWORKS_CACHE", str(tmp_path))
    calls = []

    def fake_run(method, seed, s, splits):
        calls.append((method, seed, s.lr))
        return {"method": method, "seed": seed, "lr": s.lr, "val_selection_score": s.lr}

    monkeypatch.setattr(bench, "run_method", fake_run)
    settings = dict(Settings(epochs=3).__dict__)
    got = [
        bench.run_cached(0, "kd", lr, settings, splits_fn=lambda: None)["lr"] for lr in (0.005, 0.01, 0.02)
    ]
    assert got == [0.005, 0.01, 0.02]
    assert calls == [("kd", 0, 0.005), ("kd", 0, 0.01), ("kd", 0, 0.02)]
    # a second pass is served from the cache (an interrupted benchmark resumes), values unchanged
    again = [
        bench.run_cached(0, "kd", lr, settings, splits_fn=lambda: None)["lr"] for lr in (0.005, 0.01, 0.02)
    ]
    assert again == got and len(calls) == 3
    # another seed or method is another run
    assert bench.run_cached(1, "kd", 0.01, settings, splits_fn=lambda: None)["seed"] == 1
    assert (
        bench.run_cached(0, "early_readout", 0.01, settings, splits_fn=lambda: None)["method"]
        == "early_readout"
    )
    assert len(calls) == 5


def test_select_lr_uses_the_validation_score_and_breaks_ties_to_the_first():
    runs = [
        {"lr": 0.005, "val_selection_score": 0.50, "test_worst_group_acc": 0.9},
        {"lr": 0.01, "val_selection_score": 0.70, "test_worst_group_acc": 0.1},
        {"lr": 0.02, "val_selection_score": 0.70, "test_worst_group_acc": 0.2},
    ]
    assert bench.select_lr(runs)["lr"] == 0.01  # best validation, whatever the test numbers say
    assert bench.select_lr(runs[:1])["lr"] == 0.005
    with pytest.raises(ValueError):
        bench.select_lr([])


def test_plan_gives_every_arm_the_same_grid_and_full_is_powered():
    full, cpu = bench.plan("full"), bench.plan("cpu")
    assert bench.plan("gpu") == full
    assert full["seeds"] >= 3 and cpu["seeds"] >= 3 and bench.plan("smoke")["seeds"] >= 2
    assert len(full["lrs"]) >= 2 and full["epochs"] >= 150
