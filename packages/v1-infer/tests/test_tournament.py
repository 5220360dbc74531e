"""Schedule, budget accounting and the oracle-judge property of `SwissTournament`."""

import numpy as np
import pytest

from v1_infer import (
    Candidate,
    OracleJudge,
    PairOutcome,
    PairRequest,
    SwissTournament,
    TournamentConfig,
    V1Infer,
    WinRateStats,
)
from v1_infer.scheduling import swiss_pairs


def _mixed_problems(rng, n_problems, n_min=2, n_max=32):
    out = []
    while len(out) < n_problems:
        n = int(rng.integers(n_min, n_max + 1))
        y = rng.random(n) < rng.random()
        if y.all() or not y.any():
            continue
        out.append([Candidate(f"c{k}", {"correct": bool(v)}) for k, v in enumerate(y)])
    return out


def _drive(t: SwissTournament, judge_fn):
    rounds = []
    while reqs := t.propose():
        rounds.append([(r.a, r.b) for r in reqs])
        t.observe(reqs, [judge_fn(r) for r in reqs])
    return rounds


@pytest.mark.parametrize("position", ["fixed", "random", "both"])
def test_oracle_judge_always_picks_a_correct_candidate(position):
    rng = np.random.default_rng(0)
    problems = _mixed_problems(rng, 150)
    # budgets count calls; 'both' spends 2 calls per pair, so B >= N pairs needs mult >= 2 there
    for mult in (1.0, 1.5, 2.0, 3.0) if position != "both" else (2.0, 3.0):
        cfg = TournamentConfig(budget_multiplier=mult, position=position, seed=3)
        res = V1Infer(OracleJudge(8, 6), cfg).rank_many(["q"] * len(problems), problems)
        for cands, r in zip(problems, res):
            assert cands[r.best_index].meta["correct"], (len(cands), mult, r.order)


def test_every_n_from_2_to_32_with_oracle():
    rng = np.random.default_rng(1)
    for n in range(2, 33):
        for _ in range(5):
            y = np.zeros(n, bool)
            y[rng.choice(n, size=int(rng.integers(1, n)), replace=False)] = True
            cands = [Candidate("x", {"correct": bool(v)}) for v in y]
            r = V1Infer(
                OracleJudge(), TournamentConfig(budget_multiplier=1.0, seed=int(rng.integers(1e6)))
            ).rank("q", cands)
            assert y[r.best_index]


def test_reversed_main_text_sign_fails_the_oracle():
    rng = np.random.default_rng(0)
    problems = _mixed_problems(rng, 200)
    res = V1Infer(OracleJudge(8, 6), TournamentConfig(budget_multiplier=3.0, sign="main_text")).rank_many(
        ["q"] * len(problems), problems
    )
    wrong = sum(not c[r.best_index].meta["correct"] for c, r in zip(problems, res))
    assert wrong / len(problems) > 0.9


def _noisy_judge(seed=0):
    rng = np.random.default_rng(seed)
    return lambda r: PairOutcome(float(rng.integers(1, 11)), float(rng.integers(1, 11)))


@pytest.mark.parametrize("n,mult", [(16, 3.0), (16, 1.0), (7, 2.0), (3, 1.0), (5, 2.5), (32, 2.0)])
def test_budget_exact_rounds_disjoint(n, mult):
    cfg = TournamentConfig(budget_multiplier=mult, seed=5)
    t = SwissTournament(n, cfg)
    rounds = _drive(t, _noisy_judge())
    calls = sum(len(r) for r in rounds)
    assert calls == t.budget == max(n, int(mult * n))  # N >= 3: the budget is always spent
    assert t.result().calls == calls and t.result().rounds == len(rounds)
    for r in rounds:
        nodes = [x for p in r for x in p]
        assert len(nodes) == len(set(nodes)), "pairs within a round must be disjoint"
        assert all(a != b for a, b in r)
    assert len(rounds[0]) == n // 2  # round 0 is a perfect matching


def test_n16_b48_uses_48_calls():
    t = SwissTournament(16, TournamentConfig(budget_multiplier=3.0))
    _drive(t, _noisy_judge(1))
    assert t.calls == 48


@pytest.mark.parametrize("mult", [1.0, 2.0, 3.0, 10.0])
def test_n2_uses_exactly_one_call(mult):
    t = SwissTournament(2, TournamentConfig(budget_multiplier=mult))
    assert len(_drive(t, _noisy_judge())) == 1 and t.calls == 1


def test_n1_and_n0():
    t = SwissTournament(1)
    assert t.propose() == [] and t.result().order == [0] and t.result().calls == 0
    assert SwissTournament(0).result().order == []


def test_coverage_reaches_min_degree():
    for n in (4, 9, 16):
        t = SwissTournament(n, TournamentConfig(budget_multiplier=3.0, min_degree=3))
        judge = _noisy_judge(2)
        while reqs := t.propose():
            t.observe(reqs, [judge(r) for r in reqs])
            if t.phase == "swiss":
                break
        assert (t.stats.degree >= min(3, n - 1)).all()


def test_same_seed_same_schedule_and_different_seed_differs():
    def schedule(seed):
        t = SwissTournament(16, TournamentConfig(budget_multiplier=2.0, seed=seed))
        return _drive(t, _noisy_judge(7))

    assert schedule(3) == schedule(3)
    assert schedule(3) != schedule(4)


def test_budget_never_exceeded_with_both_orders_and_retries():
    for mult in (1.0, 1.7, 3.0):
        cfg = TournamentConfig(budget_multiplier=mult, position="both", on_parse_error="retry", max_retries=2)
        t = SwissTournament(11, cfg)
        rng = np.random.default_rng(0)

        def judge(r, rng=rng):
            if rng.random() < 0.3:
                return PairOutcome(None, None, parsed=False)
            return PairOutcome(float(rng.integers(1, 11)), float(rng.integers(1, 11)))

        _drive(t, judge)
        assert t.calls <= t.budget
        assert t.budget - t.calls < 2  # only an odd leftover call can remain with 2 calls per pair


def test_swiss_prefers_unseen_partner_over_closer_seen_one():
    s = WinRateStats(4)
    # order 0,1,2,3 by µ; 0 has met 1 (its closest neighbour) but not 2
    s.wins[:] = [0.9, 0.8, 0.3, 0.1]
    s.W[:] = [1.0, 1.0, 1.0, 1.0]
    s.counts[0, 1] = s.counts[1, 0] = 1
    order = [0, 1, 2, 3]
    assert swiss_pairs(s, window=8, key="unseen_first", max_pairs=10, order=order)[0] == (0, 2)
    assert swiss_pairs(s, window=8, key="gap_first", max_pairs=10, order=order)[0] == (0, 1)
    # the window limits the candidates: with h=1 only the next rank is eligible
    assert swiss_pairs(s, window=1, key="unseen_first", max_pairs=10, order=order)[0] == (0, 1)


def test_position_modes_place_slots():
    def first_round(position, seed=0):
        t = SwissTournament(8, TournamentConfig(position=position, seed=seed))
        return t.propose()

    fixed = first_round("fixed")
    both = first_round("both")
    assert len(both) == 2 * len(fixed)
    assert [(r.a, r.b) for r in both[1::2]] == [(r.b, r.a) for r in both[0::2]]
    swapped = 0
    for seed in range(5):
        fixed = first_round("fixed", seed)
        rnd = first_round("random", seed)
        assert {frozenset((r.a, r.b)) for r in rnd} == {frozenset((r.a, r.b)) for r in fixed}
        swapped += sum((r.a, r.b) != (f.a, f.b) for r, f in zip(rnd, fixed))
    assert 0 < swapped < 20  # about half of the 20 calls swapped


def test_both_orders_consistency_gating_turns_disagreement_into_tie():
    t = SwissTournament(2, TournamentConfig(position="both"))
    reqs = t.propose()
    assert [(r.a, r.b) for r in reqs] == [(reqs[0].a, reqs[0].b), (reqs[0].b, reqs[0].a)]
    # slot A always wins by 9 vs 3: pure position bias
    t.observe(reqs, [PairOutcome(9, 3), PairOutcome(9, 3)])
    assert t.stats.mu.tolist() == [0.5, 0.5]
    assert t.stats.W.tolist() == pytest.approx([0.1, 0.1])


def test_parse_error_policies():
    def run(policy):
        t = SwissTournament(2, TournamentConfig(budget_multiplier=1.0, on_parse_error=policy, max_retries=1))
        outs = iter([PairOutcome(None, None, parsed=False)] * 3)
        while reqs := t.propose():
            t.observe(reqs, [next(outs) for _ in reqs])
        return t

    tie = run("tie")
    assert tie.calls == 1 and tie.parse_failures == 1 and tie.stats.avg_rating.tolist() == [5.0, 5.0]
    assert tie.result().comparisons[0].used == "tie"
    skip = run("skip")
    # a skipped pair leaves no trace, so coverage asks again until the budget (2 for N=2) is spent
    assert skip.calls == 2 and skip.stats.W.sum() == 0 and skip.result().comparisons[0].used == "skip"
    retry = run("retry")  # N=2 budget is 2 calls: one failure, one retry that fails too -> tie
    assert retry.calls == 2 and retry.parse_failures == 2
    assert [c.used for c in retry.result().comparisons] == ["retry", "tie"]


def test_observe_rejects_wrong_number_of_outcomes():
    t = SwissTournament(4)
    reqs = t.propose()
    with pytest.raises(ValueError, match="outcomes"):
        t.observe(reqs, [])


def test_config_validation():
    with pytest.raises(ValueError, match="position"):
        TournamentConfig(position="sideways")
    with pytest.raises(ValueError, match="budget_multiplier"):
        TournamentConfig(budget_multiplier=0)
    assert TournamentConfig(budget_multiplier=0.5).budget(16) == 16
    assert TournamentConfig(budget_multiplier=0.5, enforce_min_budget=False).budget(16) == 8


def test_audit_log_records_every_call():
    t = SwissTournament(6, TournamentConfig(budget_multiplier=2.0))
    rounds = _drive(t, lambda r: PairOutcome(7, 4, input_tokens=10, output_tokens=3))
    res = t.result()
    assert [(c.i, c.j) for c in res.comparisons] == [p for r in rounds for p in r]
    assert res.input_tokens == 10 * res.calls and res.output_tokens == 3 * res.calls
    assert {c.round for c in res.comparisons} == set(range(len(rounds)))
    assert isinstance(PairRequest(0, 1), PairRequest)


def test_async_driver_matches_sync_driver():
    import asyncio

    rng = np.random.default_rng(4)
    problems = _mixed_problems(rng, 20)
    cfg = TournamentConfig(budget_multiplier=2.0, seed=9)
    sync = V1Infer(OracleJudge(9, 4), cfg).rank_many(["q"] * 20, problems)
    asy = asyncio.run(V1Infer(OracleJudge(9, 4), cfg).arank_many(["q"] * 20, problems))
    assert [r.order for r in sync] == [r.order for r in asy]
    assert [r.calls for r in sync] == [r.calls for r in asy]


def test_judge_batch_failure_is_reported_for_every_problem():
    class Broken:
        def judge_pairs(self, queries):
            raise ConnectionError("engine down")

    # default on_backend_error="fail": each problem is marked failed, nothing is scored or counted as a parse failure
    res = V1Infer(Broken(), TournamentConfig(budget_multiplier=1.0)).rank_many(
        ["a", "b"], [["x", "y", "z"]] * 2
    )
    assert len(res) == 2
    for r in res:
        assert r.errors and "engine down" in r.errors[0] and r.failed and "engine down" in r.failed
        assert r.parse_failures == 0 and r.backend_errors == r.calls == 1 and r.pairs_judged == 0
        assert r.to_dict()["best_index"] is None
    # "skip": the run goes on, no pair is scored, the result says it rests on 0 judged pairs
    cfg = TournamentConfig(budget_multiplier=1.0, on_backend_error="skip", abort_after=0)
    for r in V1Infer(Broken(), cfg).rank_many(["a", "b"], [["x", "y", "z"]] * 2):
        assert not r.failed and r.backend_errors == r.calls == 3 and r.parse_failures == 0
        assert r.pairs_judged == 0 and r.pairs_unjudged == 3 and r.scores == [0.5, 0.5, 0.5]
