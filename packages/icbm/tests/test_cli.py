"""The console script: train -> evaluate -> ask on a tiny synthetic task."""

import io

import numpy as np
import pytest
import torch

import icbm
from icbm.checkpoint import load_checkpoint
from icbm.cli import build_parser, cmd_ask, main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("icbm") / "m.pt"
    assert main(["train", "--n-train", "400", "--epochs", "5", "--out", str(path)]) == 0
    return path


def test_train_checkpoint_round_trip(ckpt):
    model, cfg = load_checkpoint(ckpt)
    assert cfg["mode"] == "independent" and len(model.groups) == 16
    assert isinstance(model, icbm.ConceptBottleneckModel)


def test_evaluate_prints_table(ckpt, capsys):
    main(
        [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--n-train",
            "400",
            "--budget",
            "2",
            "--policy",
            "coop",
            "--beta",
            "10",
        ]
    )
    out = capsys.readouterr().out
    assert "| coop |" in out and "k=2" in out


def test_ask_dialogue_reads_answers_and_rejects_bad_ones(ckpt):
    args = build_parser().parse_args(
        ["ask", "--checkpoint", str(ckpt), "--n-train", "400", "--budget", "2", "--beta", "10"]
    )
    lines = []
    d = cmd_ask(args, stdin=io.StringIO("7\n1\n?\n"), out=lines.append)
    assert d.asked == 2 and d.done
    assert any("invalid answer" in line for line in lines)
    assert any(line.startswith("Q2") for line in lines)


def test_evaluate_on_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    c = (rng.random((200, 3)) < 0.5).astype(np.float32)
    x = np.concatenate([c * 2 - 1 + 0.5 * rng.normal(size=(200, 3)), rng.normal(size=(200, 2))], 1)
    y = (c[:, 0] + c[:, 1] > 0.5).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, c=c, y=y)
    m = tmp_path / "m.pt"
    main(["train", "--data", str(tmp_path / "d.npz"), "--epochs", "5", "--out", str(m)])
    main(["evaluate", "--checkpoint", str(m), "--data", str(tmp_path / "d.npz"), "--budget", "3"])
    assert "| oracle |" in capsys.readouterr().out
    assert torch.is_tensor(load_checkpoint(m)[0].q_low)


def test_demo_prints_all_policies(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PAPERWORKS_CACHE", str(tmp_path))
    main(["demo", "--n-train", "400", "--epochs", "3", "--budget", "2"])
    out = capsys.readouterr().out
    for name in ("random", "static-greedy", "uncertainty", "coop", "eig", "oracle"):
        assert f"| {name} |" in out
    assert list(tmp_path.glob("icbm-synthetic/*/DONE"))  # the trained model was cached


def test_help_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("train", "evaluate", "ask", "bench"):
        assert cmd in out
