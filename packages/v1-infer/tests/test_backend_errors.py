"""Backend errors vs parse failures, both-orders gating with asymmetric verdicts, tie-breaks and golden
rankings where index order is not the answer, the abort threshold, request planning (seeds, cache)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from v1_infer import (
    BackendUnavailable,
    Candidate,
    LLMPairwiseJudge,
    PairOutcome,
    ProblemFailed,
    RoundRobin,
    SwissTournament,
    TournamentConfig,
    V1Infer,
    WinRateStats,
)
from v1_infer.backends.base import Generation, SamplingParams
from v1_infer.backends.requests import RequestPlanner
from v1_infer.baselines import PointwiseBestOfN
from v1_infer.driver import run_selectors
from v1_infer.types import PointOutcome

ERR = "HTTP 500 after retries"


def _drive(t, fn):
    while reqs := t.propose():
        t.observe(reqs, [fn(r) for r in reqs])
    return t.result()


# ---- backend errors are never scored ----------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        PairOutcome(None, None, parsed=False, error=ERR),
        PairOutcome(10, 1, parsed=True, error=ERR),  # ratings present but the call failed: still not scored
    ],
)
def test_backend_errors_are_never_ties_or_slot_a_wins(bad):
    cfg = TournamentConfig(budget_multiplier=2.0, on_backend_error="skip")
    res = _drive(SwissTournament(6, cfg), lambda r: bad)
    assert res.backend_errors == res.calls > 0 and res.parse_failures == 0
    assert res.pairs_judged == 0 and res.pairs_unjudged == res.calls
    assert res.scores == [0.5] * 6 and res.avg_rating == [0.0] * 6  # no win, no tie, no rating
    assert {c.used for c in res.comparisons} == {"backend_error"}
    failed = _drive(SwissTournament(6, TournamentConfig(budget_multiplier=2.0)), lambda r: bad)
    assert failed.failed and ERR in failed.failed and failed.calls == 3  # stops after round 0
    with pytest.raises(ProblemFailed):
        _ = failed.best_index


def test_errors_when_the_worst_candidate_sits_in_slot_a_do_not_help_it():
    quality = [4, 9, 1, 6, 3, 7]  # best is 1, worst is 2

    def judge(r):
        if r.a == 2:  # every call with the worst candidate in slot A fails at the backend
            return PairOutcome(None, None, parsed=False, error=ERR)
        return PairOutcome(1 + quality[r.a], 1 + quality[r.b])

    cfg = TournamentConfig(budget_multiplier=4.0, on_backend_error="skip", seed=1)
    res = _drive(RoundRobin(6, cfg), judge)
    assert res.order[0] == 1 and res.order[-1] == 2
    assert res.backend_errors > 0 and res.pairs_unjudged == res.backend_errors
    assert res.scores[2] == 0.0  # lost every judged game; failed calls added nothing


def test_knockout_match_without_a_judged_vote_is_not_a_slot_a_win():
    from v1_infer import Knockout

    k = Knockout(4, k=1, config=TournamentConfig(on_backend_error="skip"))
    reqs = k.propose()
    outs = [PairOutcome(None, None, parsed=False, error=ERR)] + [PairOutcome(8, 2)] * (len(reqs) - 1)
    k.observe(reqs, outs)
    res = k.result()
    assert res.failed and "no judged vote" in res.failed and k.propose() == []


def test_pointwise_backend_errors():
    def run(policy):
        t = PointwiseBestOfN(3, on_backend_error=policy)
        reqs = t.propose()
        outs = [
            PointOutcome(None, parsed=False, error=ERR) if r.i == 0 else PointOutcome(7 - r.i) for r in reqs
        ]
        t.observe(reqs, outs)
        return t.result()

    skip = run("skip")
    assert not skip.failed and skip.scores == [0.0, 6.0, 5.0] and skip.order[0] == 1
    assert skip.backend_errors == 1 and skip.parse_failures == 0 and skip.pairs_unjudged == 1
    fail = run("fail")
    assert fail.failed and fail.to_dict()["best_index"] is None


# ---- both-orders gating with asymmetric verdicts -------------------------------------------------


def _both_round(o1, o2):
    t = SwissTournament(2, TournamentConfig(position="both", budget_multiplier=1.0, on_parse_error="skip"))
    reqs = t.propose()
    i, j = reqs[0].a, reqs[0].b
    assert (reqs[1].a, reqs[1].b) == (j, i)
    t.observe(reqs, [o1, o2])
    return t, i, j


def test_gating_disagreement_with_asymmetric_margins_is_a_tie():
    # order 1: i (slot A) wins 9-2; order 2: j (slot A) wins 6-5. Averaged, i leads 7 vs 4 (margin 3/9),
    # but the orders disagree, so the pair must count as a tie at weight tau
    t, i, j = _both_round(PairOutcome(9, 2), PairOutcome(6, 5))
    assert t.stats.mu.tolist() == [0.5, 0.5]
    assert t.stats.W.tolist() == pytest.approx([0.1, 0.1])
    assert t.stats.avg_rating[i] == t.stats.avg_rating[j] == pytest.approx(5.5)


def test_gating_agreement_keeps_the_averaged_margin():
    # order 1: i wins 8-3; order 2 (j in slot A): j 4, i 7 -> i wins both; averaged 7.5 vs 3.5
    t, i, j = _both_round(PairOutcome(8, 3), PairOutcome(4, 7))
    assert t.stats.mu[i] == 1.0 and t.stats.mu[j] == 0.0
    assert t.stats.W[i] == pytest.approx(4 / 9)
    assert t.stats.avg_rating[i] == pytest.approx(7.5) and t.stats.avg_rating[j] == pytest.approx(3.5)


@pytest.mark.parametrize("o1,o2", [((8, 3), (5, 5)), ((5, 5), (3, 8))])
def test_gating_a_tie_in_one_order_and_a_win_in_the_other_is_a_tie(o1, o2):
    # one order prefers a candidate, the other sees no difference: the verdicts differ -> tie (weight tau)
    t, i, j = _both_round(PairOutcome(*o1), PairOutcome(*o2))
    assert t.stats.mu.tolist() == [0.5, 0.5]
    assert t.stats.W.tolist() == pytest.approx([0.1, 0.1])


@pytest.mark.parametrize("policy,weight", [("skip", 0.0), ("tie", 0.1)])
def test_both_orders_with_one_order_failed_never_counts_the_single_verdict(policy, weight):
    t = SwissTournament(2, TournamentConfig(position="both", budget_multiplier=1.0, on_parse_error=policy))
    reqs = t.propose()
    t.observe(reqs, [PairOutcome(10, 1), PairOutcome(None, None, parsed=False)])
    assert t.stats.mu.tolist() == [0.5, 0.5]  # the lone 10-1 verdict would give mu 1.0 / 0.0
    assert t.stats.W.tolist() == pytest.approx([weight, weight])
    assert t.parse_failures == 1 and [c.used for c in t.log] == ["incomplete", policy]


def test_both_orders_with_one_order_backend_error_is_unjudged():
    t = SwissTournament(2, TournamentConfig(position="both", budget_multiplier=1.0, on_backend_error="skip"))
    reqs = t.propose()
    t.observe(reqs, [PairOutcome(10, 1), PairOutcome(None, None, parsed=False, error=ERR)])
    assert t.stats.W.tolist() == [0.0, 0.0] and t.pairs_unjudged == 1 and t.backend_errors == 1


# ---- tie-break and golden rankings (index order is never the answer) -----------------------------


def test_tiebreak_by_average_rating_golden():
    s = WinRateStats(4)
    s.update(0, 1, 3, 8)  # 1 beats 0
    s.update(2, 3, 2, 9)  # 3 beats 2
    # mu: 1 and 3 tie at 1.0, 0 and 2 tie at 0.0; average rating breaks both ties against index order
    assert s.ranking("avg_rating") == [3, 1, 0, 2]
    assert s.ranking("index") == [1, 3, 0, 2]


def test_final_tiebreak_in_a_tournament_uses_average_rating():
    # N=4, a budget of exactly the 2 disjoint calls of round 0: two winners tie at mu 1, two losers at
    # mu 0; the order inside each tie must follow the average rating
    cfg = TournamentConfig(budget_multiplier=0.5, enforce_min_budget=False, seed=0)
    t = SwissTournament(4, cfg)
    reqs = t.propose()
    assert len(reqs) == 2
    ratings = {}
    outs = []
    for k, r in enumerate(reqs):  # slot B wins both matches, by different margins
        outs.append(PairOutcome(2 + k, 7 + 2 * k))
        ratings[r.b] = 7 + 2 * k
        ratings[r.a] = 2 + k
    t.observe(reqs, outs)
    assert t.propose() == []
    expected = sorted(range(4), key=lambda c: (-(1.0 if ratings[c] >= 7 else 0.0), -ratings[c]))
    assert t.result().order == expected and expected != sorted(expected)


def test_round_robin_golden_ranking_is_quality_order_not_index_order():
    quality = [3, 8, 1, 6, 9, 2, 5]
    res = _drive(
        RoundRobin(7, TournamentConfig(seed=2)), lambda r: PairOutcome(1 + quality[r.a], 1 + quality[r.b])
    )
    assert res.order == [4, 1, 3, 6, 0, 5, 2]


def test_swiss_order_equals_an_independent_replay_of_its_audit_log():
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = int(rng.integers(3, 12))
        quality = rng.permutation(n)
        noise = rng.integers(-1, 2, size=(n, n))

        def judge(r, quality=quality, noise=noise):
            return PairOutcome(
                float(np.clip(1 + quality[r.a] + noise[r.a, r.b], 1, 10)),
                float(np.clip(1 + quality[r.b], 1, 10)),
            )

        res = _drive(SwissTournament(n, TournamentConfig(budget_multiplier=2.0, seed=trial)), judge)
        wins, W, rs, rc = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        for c in res.comparisons:  # independent re-implementation of Eq. 1 (appendix sign) + final order
            ri, rj = c.rating_i, c.rating_j
            w = max(abs(ri - rj) / 9, 0.1)
            v = 1.0 if ri > rj else (0.5 if ri == rj else 0.0)
            wins[c.i] += w * v
            wins[c.j] += w * (1 - v)
            W[c.i] += w
            W[c.j] += w
            rs[c.i] += ri
            rs[c.j] += rj
            rc[c.i] += 1
            rc[c.j] += 1
        mu = np.where(W > 0, wins / np.maximum(W, 1e-12), 0.5)
        avg = np.where(rc > 0, rs / np.maximum(rc, 1), 0.0)
        expected = sorted(range(n), key=lambda k: (-mu[k], -avg[k], k))
        assert res.order == expected
        assert res.scores == pytest.approx(mu.tolist())


# ---- one absurd reply fails one call, not the round --------------------------------------------


class _ScriptedGen:
    def __init__(self, texts):
        self.texts = texts

    def generate(self, prompts, params):
        return [[Generation(self.texts(p))] for p in prompts]


def test_absurd_rating_fails_one_call_not_the_cross_problem_round():
    def texts(prompt):
        if "HUGE" in prompt.split("**Submission A**")[-1].split("**Submission B**")[0]:
            return "<rating_A>" + "9" * 5000 + "</rating_A><rating_B>3</rating_B>"
        return "<rating_A>7</rating_A><rating_B>4</rating_B>"

    judge = LLMPairwiseJudge(_ScriptedGen(texts), "math")
    cands = [["a", "HUGE b", "c", "d"], ["e", "f"], ["g", "h", "i"]]
    res = V1Infer(judge, TournamentConfig(budget_multiplier=1.0)).rank_many(["p1", "p2", "p3"], cands)
    assert all(r.backend_errors == 0 and not r.failed for r in res)
    assert res[1].parse_failures == 0 and res[2].parse_failures == 0 and res[1].pairs_judged == res[1].calls
    huge_calls = [c for c in res[0].comparisons if c.i == 1]
    assert res[0].parse_failures == len(huge_calls) and all(not c.parsed for c in huge_calls)
    assert judge.failure_reasons.get("absurd rating (more than 4 digits)") == len(huge_calls)


# ---- abort threshold and the quickstart with no server ------------------------------------------


def test_run_stops_after_consecutive_failures_and_reports_finished_problems_first():
    class Down:
        def judge_pairs(self, queries):
            return [PairOutcome(None, None, parsed=False, error="ConnectError") for _ in queries]

    from v1_infer.baselines import make_selector

    cfg = TournamentConfig(on_backend_error="skip")
    cands = [[Candidate("solo")]] * 2 + [[Candidate(f"c{k}") for k in range(8)]] * 5
    sels = [make_selector("v1", c, cfg) for c in cands]
    done = []
    with pytest.raises(BackendUnavailable, match="20 consecutive failed judge calls"):
        run_selectors(sels, ["q"] * 7, cands, Down(), on_done=lambda p, r: done.append(p), abort_after=8)
    assert done == [0, 1]  # the one-candidate problems were handed over before the abort
    assert sum(s.calls for s in sels) == 20  # one round (5 x 4 calls), then stop; not 5 x 16 calls


def test_quickstart_with_no_server_raises_instead_of_printing_a_best():
    from v1_infer.backends import OpenAICompatGenerator

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    judge = LLMPairwiseJudge(OpenAICompatGenerator(url, "my-model", max_retries=0), task="math")
    res = V1Infer(judge, TournamentConfig(budget_multiplier=2.0)).rank(
        "What is 2+2?", ["\\boxed{4}", "\\boxed{5}"]
    )
    with pytest.raises(ProblemFailed, match="ConnectError"):
        print(res.best_index)
    assert res.parse_failures == 0 and res.backend_errors == 1 and judge.parse_failure_rate == 0.0


# ---- request planning: seeds and cache ---------------------------------------------------------


class _Recorder:
    accepts_param_list = True

    def __init__(self):
        self.sent = []

    def generate(self, prompts, params):
        out = []
        for p, q in zip(prompts, params):
            self.sent.append((p, q.seed))
            out.append([Generation(f"{p}:{q.seed}")])
        return out


def test_planner_sends_no_seed_by_default_and_distinct_seeds_from_a_run_seed(tmp_path):
    rec = _Recorder()
    RequestPlanner(rec, "m").generate(["x", "x", "y"], SamplingParams(max_tokens=4))
    assert [s for _, s in rec.sent] == [None, None, None]
    rec = _Recorder()
    plan = RequestPlanner(rec, "m", run_seed=3)
    plan.generate(["x", "x", "y"], SamplingParams(max_tokens=4))
    plan.generate(["x"], SamplingParams(max_tokens=4))  # the same prompt again later: another seed
    seeds = [s for _, s in rec.sent]
    assert len(set(seeds)) == 4 and all(isinstance(s, int) for s in seeds)
    rec2 = _Recorder()  # the same run seed replays the same seeds
    p2 = RequestPlanner(rec2, "m", run_seed=3)
    p2.generate(["x", "x", "y"], SamplingParams(max_tokens=4))
    p2.generate(["x"], SamplingParams(max_tokens=4))
    assert rec2.sent == rec.sent
    other = _Recorder()
    RequestPlanner(other, "m", run_seed=4).generate(["x"], SamplingParams(max_tokens=4))
    assert other.sent[0][1] != seeds[0]


def test_cache_serves_answered_requests_and_never_failed_ones(tmp_path):
    class Flaky(_Recorder):
        def generate(self, prompts, params):
            out = super().generate(prompts, params)
            return [[Generation("", error="down")] if p == "bad" else o for p, o in zip(prompts, out)]

    path = tmp_path / "c.jsonl"
    first = Flaky()
    RequestPlanner(first, "m", run_seed=1, cache_path=path).generate(
        ["a", "bad", "a"], SamplingParams(max_tokens=4)
    )
    again = Flaky()
    plan = RequestPlanner(again, "m", run_seed=1, cache_path=path)
    out = plan.generate(["a", "bad", "a", "c"], SamplingParams(max_tokens=4))
    assert [p for p, _ in again.sent] == ["bad", "c"] and plan.hits == 2 and plan.sent == 2
    assert out[0][0].text == first.sent[0][0] + ":" + str(first.sent[0][1])
    # a different model or params is a different key
    other = Flaky()
    RequestPlanner(other, "m2", run_seed=1, cache_path=path).generate(["a"], SamplingParams(max_tokens=4))
    assert len(other.sent) == 1
    # a torn last line (killed mid-append) is cut, the rest still serves
    with open(path, "a") as f:
        f.write('{"key": "abc", "gens": [{"te')
    plan = RequestPlanner(_Recorder(), "m", run_seed=1, cache_path=path)
    plan.generate(["a"], SamplingParams(max_tokens=4))
    assert plan.hits == 1
