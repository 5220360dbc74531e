import json
import subprocess
import sys

import pytest

from mast.annotate import load_annotations
from mast.cli import build_parser, main


def _summary(err: str) -> dict:
    """The JSON summary line `mast annotate` prints on stderr."""
    return next(json.loads(x) for x in reversed(err.splitlines()) if x.startswith("{"))


def test_help_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("taxonomy", "validate", "normalize", "annotate", "agree", "report", "stub-server", "bench"):
        assert cmd in out
    assert (
        build_parser().parse_args(["annotate", "t.jsonl", "-o", "a.jsonl", "--judge", "stub"]).concurrency
        == 8
    )


def test_taxonomy_validate_normalize(fixtures, tmp_path, capsys):
    assert main(["taxonomy", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["modes"]) == 14
    assert main(["validate", str(fixtures / "ag2.json")]) == 0
    v = json.loads(capsys.readouterr().out)
    assert v["format"] == "ag2" and v["leak_fields_found"] == {"note": 1, "other_data": 1}
    out = tmp_path / "n" / "traces.jsonl"
    assert main(["normalize", str(fixtures / "mad.json"), "-o", str(out.parent)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["labels"]["1.3"] == 1 and "sanitize" in rows[0]["metadata"]
    assert main(["validate", str(tmp_path / "missing.json")]) == 2
    assert "error" in capsys.readouterr().err


def test_annotate_agree_report_against_served_stub(fixtures, tmp_path, capsys):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mast.cli", "stub-server", "--style", "echo", "--fail-first", "429:1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().split("listening on", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        traces = tmp_path / "t" / "traces.jsonl"
        assert main(["normalize", str(fixtures / "mad.json"), "-o", str(traces.parent)]) == 0
        out, cache = tmp_path / "a" / "annotations.jsonl", tmp_path / "cache"
        args = [
            "annotate",
            str(traces),
            "-o",
            str(out.parent),
            "--judge",
            url,
            "--model",
            "stub",
            "--cache",
            str(cache),
            "--concurrency",
            "2",
        ]
        assert main(args) == 0
        err = capsys.readouterr().err
        assert _summary(err)["judge_calls"] == 2
        anns = load_annotations(out)
        assert [a.trace_id for a in anns] == ["0", "1"] and all(a.ok for a in anns)
        assert main(args) == 2  # the output exists: refuse to clobber it
        assert "--resume" in capsys.readouterr().err
        assert main(args + ["--overwrite"]) == 0  # cached
        assert _summary(capsys.readouterr().err)["judge_calls"] == 0
        assert main(args + ["--resume"]) == 0  # nothing left to do
        s = _summary(capsys.readouterr().err)
        assert s["judge_calls"] == 0 and s["resumed"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert main(["agree", str(traces), str(out), "--per-mode", "--bootstrap", "20"]) == 0
    assert "Agreement on 2 common traces" in capsys.readouterr().out
    md, png = tmp_path / "r" / "report.md", tmp_path / "r" / "report.png"
    assert (
        main(
            [
                "report",
                str(out),
                "--by",
                "mas_name",
                "--normalize",
                "share",
                "--out",
                str(md.parent),
                "--traces",
                str(traces),
            ]
        )
        == 0
    )
    text = md.read_text()
    assert "Normalisation: **share**" in text and png.stat().st_size > 1000
    assert len((md.parent / "report.csv").read_text().splitlines()) > 1
    assert "Deterministic detectors vs judge" in text and "step_repetition" in text
    assert main(["detect", str(fixtures / "hyperagent.json")]) == 0


@pytest.mark.slow
def test_mypy_passes_on_the_package():
    """Issue 20.6: `mypy -p mast` is clean under the repo's [tool.mypy] config."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "mast"], cwd=root, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout[-3000:]
