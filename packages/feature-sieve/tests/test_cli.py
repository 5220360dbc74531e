"""The console script: train (resumable), evaluate, smoke, --help."""

import json

import pytest

from feature_sieve.cli import main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "train" in out and "evaluate" in out and "smoke" in out


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    main(
        [
            "train",
            "--method",
            "sieve",
            "--steps",
            "8",
            "--batch-size",
            "32",
            "--width",
            "4",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    m = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= m["test"]["worst_group_acc"] <= m["test"]["avg_acc"] <= 1.0
    assert (out / "checkpoint.pt").is_file() and (out / "model.pt").is_file()
    capsys.readouterr()
    main(["evaluate", str(out)])
    printed = capsys.readouterr().out
    assert f"worst-group {m['test']['worst_group_acc']:.3f}" in printed


def test_evaluate_missing_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        main(["evaluate", str(tmp_path)])


def test_smoke_runs_two_methods(capsys):
    main(["smoke", "--steps", "6", "--methods", "erm,wrong_sign"])
    out = capsys.readouterr().out
    assert "erm" in out and "wrong_sign" in out and "worst-group" in out
