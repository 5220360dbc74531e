import json

import pytest

from paperworks_shared.bench import (
    BenchContext,
    Record,
    discover,
    markdown_table,
    new_figure,
    run_benchmarks,
    write_report,
)


def good(ctx):
    fig, ax = new_figure()
    ax[0][0].plot([1, 2], [3, 4])
    ctx.record("exp-one", rows=[{"method": "a", "acc": 0.5}], claim="a claim", verdict="holds", figure=fig)


def broken(ctx):
    raise ValueError("deliberately broken")


def silent(ctx):
    pass


def test_broken_benchmark_is_reported_and_others_still_run(tmp_path):
    outcomes = run_benchmarks(
        {"alpha": broken, "beta": good, "gamma": silent}, "smoke", tmp_path, progress=False
    )
    status = {o.package: o.ok for o in outcomes}
    assert status == {"alpha": False, "beta": True, "gamma": False}
    assert "deliberately broken" in (tmp_path / "alpha" / "ERROR.txt").read_text()
    rec = json.loads((tmp_path / "beta" / "exp-one.json").read_text())
    assert (
        rec["package"] == "beta" and rec["scale"] == "smoke" and rec["rows"] == [{"method": "a", "acc": 0.5}]
    )
    for key in ("commit", "machine", "time", "params", "metrics"):
        assert key in rec
    assert (tmp_path / "beta" / "exp-one.png").stat().st_size > 1000
    report = write_report(tmp_path, outcomes, scale="smoke").read_text()
    assert "## alpha" in report and "FAILED" in report and "deliberately broken" in report
    assert "## beta" in report and "a claim" in report and "![exp-one](beta/exp-one.png)" in report
    assert "recorded nothing" in report  # gamma
    # a later run of one package keeps the others in the summary table, marked as earlier runs
    (tmp_path / "beta" / "exp-one.json").write_text(json.dumps({**rec, "seconds": 2.5}))
    report = write_report(tmp_path, outcomes[:1], scale="smoke").read_text()
    assert "| alpha | FAILED" in report and "| beta | earlier run (" in report and "| 2.5 |" in report


def test_markdown_table_and_record_roundtrip(tmp_path):
    t = markdown_table([{"a": 1, "b": 0.123456}, {"a": 2, "c": "x|y"}])
    assert t.splitlines()[0] == "| a | b | c |"
    assert "0.123" in t and "x\\|y" in t
    ctx = BenchContext("pkg", "cpu", tmp_path)
    rec = ctx.record("e", rows=[{"x": 1}], metrics={"m": 2.0})
    assert Record.load(tmp_path / "pkg" / "e.json").rows == rec.rows
    with pytest.raises(ValueError, match="unknown scale"):
        BenchContext("pkg", "huge", tmp_path)
    assert ctx.pick(smoke=1, cpu=2) == 2


def test_entry_point_discovery_finds_foundation_benchmark():
    benches = discover()
    assert "paperworks-shared" in benches
    with pytest.raises(SystemExit, match="no benchmark registered"):
        discover(["no-such-package"])
