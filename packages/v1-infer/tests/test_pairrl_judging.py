"""Judge side of a PairRL step without TRL: jobs from one step's rollouts (never I-I), hand-computed
rewards, advantages with both baselines, and the λ token-mean scales."""

import numpy as np
import pytest

from v1_infer.pairrl import world
from v1_infer.pairrl.judging import build_judge_jobs, judge_advantages, judge_rewards, loss_scales


def _groups():
    rows = [{"a": 1, "b": 2}, {"a": 3, "b": 4}, {"a": 0, "b": 0}]
    outs = [["3", "1", "3", "2"], ["2", "1", "0", "4"], ["1", "1", "2", "3"]]
    return [[(r, o, world.is_correct(r, o)) for o in os_] for r, os_ in zip(rows, outs)]


def test_judge_jobs_from_step_rollouts_no_ii():
    groups = _groups()
    assert [[c for *_, c in g] for g in groups] == [
        [True, False, True, False],
        [True, False, False, False],
        [False] * 4,
    ]
    jobs = build_judge_jobs(groups, "pair", world.trl_task(), 4, np.random.default_rng(0))
    assert jobs and all(j.group in (0, 1) for j in jobs)  # the all-wrong problem gets no prompt
    for j in jobs:
        (ra, ta, ya), (rb, tb, yb) = (groups[j.group][i] for i in j.rollouts)
        assert (ya, yb) == j.labels and (ya or yb)
        assert j.prompt == world.BOS_TEXT + world.pair_prompt(world.row_problem(ra), ta, tb)
    assert sum(j.group == 1 for j in jobs) == 3  # only 3 C-I pairs exist with one correct of four
    pts = build_judge_jobs(groups, "point", world.trl_task(), 4, np.random.default_rng(0))
    assert [j.group for j in pts] == [0] * 4 + [1] * 4
    assert build_judge_jobs(groups, "rl", world.trl_task(), 4, np.random.default_rng(0)) == []


def test_judge_rewards_by_hand():
    groups = _groups()
    jobs = build_judge_jobs(groups, "pair", world.trl_task(), 4, np.random.default_rng(0))
    # "90" = ratings (10, 1): pays 1 for C-I, 0 for I-C, 0.5 for C-C; "55" hedges and earns 0
    want = {(True, False): 1.0, (False, True): 0.0, (True, True): 0.5}
    assert judge_rewards(jobs, ["90"] * len(jobs), world.trl_task(), 0.2, "minus1_over9") == [
        want[j.labels] for j in jobs
    ]
    assert judge_rewards(jobs, ["55"] * len(jobs), world.trl_task(), 0.2, "minus1_over9") == [0.0] * len(jobs)
    assert judge_rewards(jobs, ["x"] * len(jobs), world.trl_task(), 0.2, "minus1_over9") == [0.0] * len(jobs)


def test_judge_advantage_and_scale_helpers():
    assert judge_advantages([1.0, 0.0, 0.5, 0.5], [0, 0, 1, 1], "step") == [0.5, -0.5, 0.0, 0.0]
    assert judge_advantages([1.0, 0.0, 0.5, 0.5], [0, 0, 1, 1], "problem") == [0.5, -0.5, 0.0, 0.0]
    assert judge_advantages([1.0, 0.0, 1.0], [0, 0, 1], "problem") == [0.5, -0.5, 0.0]
    assert loss_scales(30, 10, 1.0, "separate") == (40 / 30, 40 / 10)
    assert loss_scales(30, 10, 2.0, "pooled") == (1.0, 2.0)
    with pytest.raises(ValueError, match="baseline"):
        judge_advantages([1.0], [0], "batch")


def test_trl_trainer_without_trl_names_the_extra(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` now raises ImportError
    monkeypatch.delitem(sys.modules, "v1_infer.pairrl.trl_trainer", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'v1-infer\[pairrl\]'"):
        importlib.import_module("v1_infer.pairrl.trl_trainer")


def test_pairrl_bench_verdict_calls_noise_honestly():
    from v1_infer.bench import pairrl_verdict

    def row(model, sel, sd=0.0):
        r = {"model": model, "pass@1": 0.6, "verifier_acc": 0.7, "v1_selected_correct": sel}
        return r | {k + "_sd": sd for k in ("pass@1", "verifier_acc", "v1_selected_correct")}

    rows = [row("warm start (SFT)", 0.6), row("pair RL", 0.637), row("point RL", 0.713)]
    assert "within noise" in pairrl_verdict(rows, seeds=1, n_problems=80)  # 2 SE ≈ 0.147 > 0.076
    assert "PointRL ahead" in pairrl_verdict(rows, seeds=3, n_problems=2000)
