"""Issue 19 for PairRL: the same lr grid and step budget for every mode, the checkpoint chosen on
validation problems only, scored once on test problems; paired headlines and convergence in the record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from v1_infer.pairrl import runner


def _fake_evaluate(calls: list, seed: int = 0):
    """Validation calls get random scores; test calls return the evaluated weights' fingerprint."""
    rng = np.random.default_rng(seed)

    def fake(model, tok, n_problems, seed, budget):
        fp = float(sum(p.detach().double().sum() for p in model.parameters()))
        kind = "val" if seed >= runner.VAL_SEED else "test"
        score = float(rng.random()) if kind == "val" else 0.5
        calls.append((kind, seed % 10_000, fp, score))
        return {
            "pass@1": 0.5,
            "verifier_acc": 0.5,
            "verifier_ties": 0.0,
            "v1_selection": score,
            "v1_selected_correct": score if kind == "val" else fp,
        }

    return fake


def test_tuned_study_keeps_the_validation_best_checkpoint_and_scores_only_it_on_test(monkeypatch):
    calls: list = []
    monkeypatch.setattr(runner, "evaluate", _fake_evaluate(calls))
    cfg = runner.RunConfig(
        modes=("pair", "rl"), seeds=(0, 1), sft_steps=2, steps=4, problems_per_step=2, eval_problems=2
    )
    rows, extra = runner.run_tuned_study(cfg, (1e-3, 3e-3), eval_every=2, val_problems=2)
    it = iter(calls)
    for seed in (0, 1):
        kind, s, fp0, v0 = next(it)
        assert (kind, s) == ("val", seed)  # warm start on validation
        assert next(it)[:2] == ("test", seed)  # warm start on test
        for mode in ("pair", "rl"):
            cands = [(v0, 0, fp0)]
            for _lr in (1e-3, 3e-3):
                for step in (2, 4):
                    kind, s, fp, score = next(it)
                    assert (kind, s) == ("val", seed)
                    cands.append((score, step, fp))
            best = cands[0]
            for c in cands[1:]:  # strictly better replaces: ties keep the earlier candidate
                if c[0] > best[0]:
                    best = c
            kind, s, fp_test, _ = next(it)
            assert (kind, s) == ("test", seed)  # exactly one test evaluation per (seed, mode)
            row = next(r for r in rows if r["seed"] == seed and r["model"] == f"{mode} RL")
            assert row["best_step"] == best[1] and row["val_score"] == best[0]
            assert fp_test == pytest.approx(best[2], rel=0, abs=0)  # the validation-best weights
    assert next(it, None) is None
    assert extra["best_steps"]["pair"] == [r["best_step"] for r in rows if r["model"] == "pair RL"]


def test_tuned_study_refuses_a_bad_grid():
    cfg = runner.RunConfig(modes=("pair",), steps=4)
    with pytest.raises(ValueError, match="lrs"):
        runner.run_tuned_study(cfg, (), eval_every=2, val_problems=2)
    with pytest.raises(ValueError, match="eval_every"):
        runner.run_tuned_study(cfg, (1e-3,), eval_every=5, val_problems=2)
    with pytest.raises(ValueError, match="torch backend"):
        runner.run_tuned_study(runner.RunConfig(backend="trl"), (1e-3,), eval_every=1, val_problems=2)


def test_bench_record_has_paired_headlines_convergence_and_grids(monkeypatch, tmp_path):
    from paperworks_shared.bench import BenchContext
    from paperworks_shared.stats import check_headline
    from v1_infer import bench

    monkeypatch.setattr(runner, "evaluate", _fake_evaluate([]))
    ctx = BenchContext("v1-infer", "smoke", tmp_path)
    cfg = runner.RunConfig(seeds=(0, 1, 2), sft_steps=2, steps=2, problems_per_step=2, eval_problems=2)
    bench.bench_pairrl(ctx, cfg, lrs=(1e-3,), eval_every=1, val_problems=2)
    rec = json.loads((tmp_path / "v1-infer" / "pairrl-small-world.json").read_text())
    names = [h["comparison"] for h in rec["headlines"]]
    assert names == ["PairRL vs PointRL (small world)", "PairRL vs RL-only (small world)"]
    for h in rec["headlines"]:
        assert h["n_seeds"] == 3 and h["delta"] == bench.PAIRRL_DELTA and check_headline(h) is None
        assert h["seeds"] == [0, 1, 2] and h["metric"] == "v1_selected_correct"
    assert set(rec["convergence"]) == {"pair", "point", "rl"}
    assert rec["convergence"]["pair"]["budget"] == 2
    assert rec["params"]["grids"] == {m: {"lr": [1e-3]} for m in ("pair", "point", "rl")}
    assert "never test" in rec["params"]["selection"]
