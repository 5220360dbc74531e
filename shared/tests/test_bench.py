import json

import pytest

from paperworks_shared.bench import (
    BenchContext,
    Record,
    RecordError,
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


def test_non_finite_numbers_become_null_and_are_named(tmp_path):
    ctx = BenchContext("pkg", "smoke", tmp_path)
    ctx.record("e", rows=[{"acc": 0.5}, {"acc": float("nan")}], metrics={"m": float("inf")})
    text = (tmp_path / "pkg" / "e.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert data["rows"][1]["acc"] is None and data["metrics"]["m"] is None
    assert any("rows[1].acc" in w for w in data["warnings"]) and any(
        "metrics.m" in w for w in data["warnings"]
    )
    report = write_report(tmp_path, scale="smoke").read_text()
    assert "**Warnings:**" in report and "rows[1].acc was not finite" in report


def test_unreadable_and_incomplete_records_are_reported_not_dropped(tmp_path):
    ctx = BenchContext("pkg", "smoke", tmp_path)
    ctx.record("good", rows=[{"x": 1}])
    (tmp_path / "pkg" / "truncated.json").write_text('{"package": "pkg", "rows": [')
    (tmp_path / "pkg" / "nan.json").write_text('{"package": "pkg", "experiment": "nan", "x": NaN}')
    rec = json.loads((tmp_path / "pkg" / "good.json").read_text())
    del rec["commit"], rec["machine"]
    (tmp_path / "pkg" / "noprov.json").write_text(json.dumps(rec))
    with pytest.raises(RecordError, match="missing commit, machine"):
        Record.load(tmp_path / "pkg" / "noprov.json")
    report = write_report(tmp_path, scale="smoke").read_text()
    assert "3 UNREADABLE result file(s)" in report
    for name in ("truncated.json", "nan.json", "noprov.json"):
        assert f"**UNREADABLE record** `pkg/{name}`" in report
    assert "### good" in report


def test_report_speaks_for_one_commit_and_marks_others_stale(tmp_path):
    ctx = BenchContext("pkg", "smoke", tmp_path)
    ctx.record("old", rows=[{"x": 1}])
    ctx.record("new", rows=[{"x": 2}])
    old = json.loads((tmp_path / "pkg" / "old.json").read_text())
    old.update(commit="aaaaaaa", time="2020-01-01T00:00:00+00:00")
    (tmp_path / "pkg" / "old.json").write_text(json.dumps(old))
    new = json.loads((tmp_path / "pkg" / "new.json").read_text())
    new.update(commit="bbbbbbb")
    (tmp_path / "pkg" / "new.json").write_text(json.dumps(new))
    report = write_report(tmp_path, scale="smoke").read_text()
    assert "Results of commit `bbbbbbb`: 1 of 2 records. **1 STALE**" in report
    assert "### old (STALE: commit `aaaaaaa`, not `bbbbbbb`)" in report
    assert "### new\n" in report
    assert "| pkg | earlier run (" in report and "| 1 of 2 |" in report
    # asking for another commit marks both
    report = write_report(tmp_path, scale="smoke", commit="ccccccc").read_text()
    assert report.count("(STALE: commit") == 2


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    from paperworks_shared.bench import main

    assert main(["--scale", "huge"]) == 2
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["--results", str(f), "--report-only"]) == 2
    assert "--results" in capsys.readouterr().err
