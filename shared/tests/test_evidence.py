"""Headline comparisons, convergence flags and the `full` scale (issue 19)."""

from __future__ import annotations

import json

import pytest

from paperworks_shared.bench import SCALES, BenchContext, Record, write_report
from paperworks_shared.stats import check_headline, compare, convergence


def test_compare_orients_differences_so_positive_means_method_better():
    up = compare([0.69, 0.70, 0.71], [0.5, 0.5, 0.5], name="acc", metric="acc", delta=0.01)
    assert up["diff_mean"] == pytest.approx(0.2) and up["verdict"] == "holds"
    # lower is better (a loss): the method's smaller values are an improvement, so diffs are positive
    down = compare(
        [1.0, 1.1, 0.9], [2.0, 2.12, 1.91], name="ppl", metric="ppl", delta=0.01, higher_is_better=False
    )
    assert down["diff_mean"] == pytest.approx(1.01) and down["verdict"] == "holds"
    assert down["method"] == [1.0, 1.1, 0.9] and down["seeds"] == [0, 1, 2]


def test_compare_one_seed_is_underpowered_and_bad_input_refused():
    assert compare([0.9], [0.1], name="x", metric="m", delta=0.01)["verdict"] == "underpowered"
    with pytest.raises(ValueError, match="pair them by seed"):
        compare([1, 2], [1], name="x", metric="m", delta=0.1)
    with pytest.raises(ValueError, match="finite"):
        compare([1, float("nan")], [1, 2], name="x", metric="m", delta=0.1)


def test_check_headline_catches_a_hand_edited_verdict():
    h = compare([0.50, 0.52, 0.49, 0.51], [0.50, 0.50, 0.51, 0.50], name="x", metric="m", delta=0.05)
    assert h["verdict"] == "equivalent" and check_headline(h) is None
    assert "values give 'equivalent'" in check_headline({**h, "verdict": "holds"})
    assert "n_seeds" in check_headline({**h, "n_seeds": 9})


def test_convergence_flags_a_best_step_in_the_last_tenth():
    assert convergence([20, 25, 30], 50)["undertrained"] is False
    c = convergence([20, 46, 30], 50)
    assert c["undertrained"] is True and c["n_late"] == 1
    assert convergence([44], 50)["undertrained"] is False and convergence([45], 50)["undertrained"] is True
    with pytest.raises(ValueError):
        convergence([60], 50)


def test_full_scale_pick_defaults():
    assert "full" in SCALES

    def ctx(scale, tmp):
        return BenchContext("p", scale, tmp)

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        assert ctx("full", d).pick(smoke=1, cpu=2) == 2
        assert ctx("full", d).pick(smoke=1, cpu=2, full=5) == 5
        assert ctx("gpu", d).pick(smoke=1, cpu=2, full=5) == 5
        assert ctx("gpu", d).pick(smoke=1, cpu=2, full=5, gpu=9) == 9
        assert ctx("cpu", d).pick(smoke=1, cpu=2, full=5, gpu=9) == 2


def test_record_refuses_a_headline_whose_verdict_does_not_follow(tmp_path):
    ctx = BenchContext("pkg", "full", tmp_path)
    good = compare([0.69, 0.70, 0.71], [0.5, 0.5, 0.5], name="acc", metric="acc", delta=0.01)
    ctx.record("ok-exp", headlines=[good], convergence={"erm": convergence([10, 48], 50)})
    with pytest.raises(ValueError, match="values give 'holds'"):
        ctx.record("bad-exp", headlines=[{**good, "verdict": "reversed"}])
    rec = Record.load(tmp_path / "pkg" / "ok-exp.json")
    assert rec.headlines[0]["verdict"] == "holds" and rec.convergence["erm"]["undertrained"] is True


def test_report_shows_headlines_recomputes_verdicts_and_flags_undertrained(tmp_path):
    ctx = BenchContext("pkg", "full", tmp_path)
    good = compare([0.69, 0.70, 0.71], [0.5, 0.5, 0.5], name="acc-gain", metric="acc", delta=0.01)
    ctx.record("exp", headlines=[good], convergence={"kd": convergence([49, 48, 47], 50)})
    # a file edited by hand afterwards: its verdict no longer follows from its numbers
    path = tmp_path / "pkg" / "exp.json"
    data = json.loads(path.read_text())
    data["headlines"][0]["verdict"] = "reversed"
    (tmp_path / "pkg" / "edited.json").write_text(json.dumps({**data, "experiment": "edited"}))
    text = write_report(tmp_path, scale="full").read_text()
    assert "## Headline verdicts" in text and "acc-gain" in text
    assert "| holds |" in text
    assert "**INCONSISTENT**" in text
    assert "**UNDER-TRAINED**" in text
