import pytest

from mast import report
from mast.annotate import Annotation
from mast.detectors import cross_check, detect
from mast.taxonomy import MAST_V3
from mast.traces import Trace, Turn


def _ann(tid, flags, mas="A", unparsed=()):
    labels = {m: (m in flags) for m in MAST_V3.ids}
    labels |= {m: None for m in unparsed}
    return Annotation(trace_id=tid, labels=labels, mas_name=mas)


def test_share_vs_prevalence():
    anns = [_ann("t1", ["1.1", "1.3"]), _ann("t2", ["1.3"]), _ann("t3", []), _ann("t4", ["1.3", "2.6"])]
    share = {r["mode"]: r["share"] for r in report.distribution(anns, normalize="share")}
    prev = {r["mode"]: r["prevalence"] for r in report.distribution(anns, normalize="prevalence")}
    assert share["1.3"] == pytest.approx(60.0) and prev["1.3"] == pytest.approx(75.0)
    assert sum(share.values()) == pytest.approx(100.0)
    assert prev["1.1"] == pytest.approx(25.0)
    cats = {
        r["category"]: r["share"]
        for r in report.category_totals(report.distribution(anns, normalize="share"), "share")
    }
    assert cats == pytest.approx({"FC1": 80.0, "FC2": 20.0, "FC3": 0.0})  # flags: 1.1x1, 1.3x3, 2.6x1


def test_unparsed_and_errors_and_groups(tmp_path):
    anns = [
        _ann("a", ["1.1"], "X", unparsed=["2.5"]),
        _ann("b", [], "X"),
        _ann("c", ["1.1"], "Y"),
        Annotation("d", {m: None for m in MAST_V3.ids}, mas_name="Y", error="boom"),
    ]
    rows = report.distribution(anns, by="mas_name", normalize="prevalence")
    x25 = next(r for r in rows if r["mas_name"] == "X" and r["mode"] == "2.5")
    assert x25["unparsed"] == 1 and x25["prevalence"] == 0.0
    y11 = next(r for r in rows if r["mas_name"] == "Y" and r["mode"] == "1.1")
    assert y11["n_traces"] == 1 and y11["prevalence"] == 100.0  # errored trace excluded
    md = report.to_markdown(report.pivot(rows, "prevalence", ["mas_name"]))
    assert md.startswith("| mode | X | Y |")
    assert report.to_csv(rows).splitlines()[0].startswith("mas_name,mode,category")
    fig = report.plot(rows, "prevalence", ["mas_name"], path=tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000 and fig
    with pytest.raises(ValueError, match="normalize"):
        report.distribution(anns, normalize="percent")
    co = report.cooccurrence([_ann("1", ["1.1", "1.3"]), _ann("2", ["1.1", "1.3"]), _ann("3", [])])
    assert co[0]["both"] == 2 and co[0]["r"] == pytest.approx(1.0)


def test_detectors():
    loop = Trace(
        "l",
        task="Compute the sum of the first ten primes please",
        turns=[Turn("solver", "Let me try computing it again with python.")] * 4,
    )
    f = {x.mode: x for x in detect(loop)}
    assert f["1.3"].present and "repeated 4x" in f["1.3"].evidence
    assert f["1.5"].present and not f["2.1"].present
    reset = Trace(
        "r",
        turns=[
            Turn("user", "Build a sudoku game with a GUI please"),
            Turn("dev", "ok, done part 1"),
            Turn("dev", "now part 2"),
            Turn("user", "Build a sudoku game with a GUI please"),
            Turn("dev", "TERMINATE"),
        ],
    )
    f = {x.mode: x for x in detect(reset)}
    assert f["2.1"].present and not f["1.5"].present and not f["1.3"].present
    clean = Trace("c", turns=[Turn("a", "solve x"), Turn("b", "x=3 \\boxed{3}")])
    assert not any(x.present for x in detect(clean))
    anns = [_ann("l", ["1.3"]), _ann("r", []), _ann("c", [])]
    rows = {r["mode"]: r for r in cross_check([loop, reset, clean], anns)}
    assert rows["1.3"]["agree"] == 3 and rows["2.1"]["agree"] == 2 and rows["2.1"]["disagree_ids"] == ["r"]
