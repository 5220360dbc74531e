"""The console script: train (resumable), evaluate, smoke, --help, and a table of bad inputs.

Every bad input must exit 2 with one line naming the problem (paperworks_shared.cli convention),
found before any training (`fit` is replaced by a function that fails the test if it is called).
"""

import json

import pytest
import torch

from feature_sieve.cli import main
from paperworks_shared.checkpoint import save_checkpoint


def test_help_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "evaluate" in out and "smoke" in out


def _train(out, *extra):
    return [
        "train", "--method", "sieve", "--steps", "8", "--batch-size", "32", "--width", "4",
        "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train(out)) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= m["test"]["worst_group_acc"] <= m["test"]["avg_acc"] <= 1.0
    assert (out / "checkpoint.pt").is_file() and (out / "model.pt").is_file()
    # everything written is loadable without unpickling arbitrary objects
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["format"] == "paperworks-checkpoint" and ck["kind"] == "feature-sieve-fit"
    assert ck["state"]["step"] == 7 and len(ck["state"]["history"]["logs"]) == 8
    mod = torch.load(out / "model.pt", weights_only=True)
    assert mod["kind"] == "feature-sieve-model" and "conv1.weight" in mod["state"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"worst_group_acc {m['test']['worst_group_acc']:.3f}" in printed


def test_smoke_runs_two_methods(capsys):
    assert main(["smoke", "--steps", "6", "--methods", "erm,wrong_sign"]) == 0
    out = capsys.readouterr().out
    assert "erm" in out and "wrong_sign" in out and "worst_group_acc" in out


@pytest.fixture
def no_training(monkeypatch):
    import feature_sieve.jtt as jtt
    import feature_sieve.train as train

    def boom(*a, **k):
        raise AssertionError("training started before the bad input was reported")

    monkeypatch.setattr(train, "fit", boom)
    monkeypatch.setattr(jtt, "fit", boom)


class _Arbitrary:
    pass


def _files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    afile = tmp_path / "afile"
    afile.write_text("x")
    tinyckpt = tmp_path / "tiny.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3, 3, 3)}, tinyckpt)  # wrong shape for a resnet18
    return {"garbage": garbage, "afile": afile, "tmp": tmp_path, "tinyckpt": tinyckpt}


BAD = [
    (["train", "--steps", "-3"], "--steps"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--batch-size", "-32"], "--batch-size"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--momentum", "1.5"], "--momentum"),
    (["train", "--weight-decay", "-1e-4"], "--weight-decay"),
    (["train", "--forget-every", "-1"], "--forget-every"),
    (["train", "--forget-lr", "nan"], "--forget-lr"),
    (["train", "--aux-lr", "0"], "--aux-lr"),
    (["train", "--aux-width", "0"], "--aux-width"),
    (["train", "--aux-depth", "-2"], "--aux-depth"),
    (["train", "--width", "0"], "--width"),
    (["train", "--jtt-upweight", "0.5"], "--jtt-upweight"),
    (["train", "--jtt-identify-steps", "0"], "--jtt-identify-steps"),
    (["train", "--dro-eta", "-0.1"], "--dro-eta"),
    (["train", "--eval-every", "0"], "--eval-every"),
    (["train", "--train-correlation", "1.2"], "--train-correlation"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--dataset", "mnist"], "--dataset"),
    (["train", "--dataset", "waterbirds"], "needs --data-root"),
    (["train", "--data-root", "/no/such/dir"], "--data-root"),
    (["train", "--root", "/no/such/dir"], "--data-root/--root"),
    (["train", "--device", "tpu"], "--device"),
    (["train", "--device", "cuda:x"], "--device"),
    (["train", "--threads", "0"], "--threads"),
    (["train", "--threads", "-2"], "--threads"),
    (["train", "--workers", "-1"], "--workers"),
    (["train", "--pretrained", "/no/such/weights.pth"], "--pretrained"),
    (["train", "--pretrained", "{garbage}"], "not a readable weights file"),
    (["evaluate", "{tmp}", "--threads", "0"], "--threads"),
    (["smoke", "--device", "gpu"], "--device"),
    (["bench", "--scale", "huge"], "--scale"),
    (["train", "--sieve-layer", "layer9"], "'layer9' does not exist"),
    (["train", "--sieve-layer", "fc"], "nothing trainable remains after sieve layer 'fc'"),
    (["train", "--model", "no_such_model"], "--model 'no_such_model'"),
    (["train", "--model", "resnet18", "--pretrained", "{tinyckpt}"], "does not fit"),
    (["train", "--out", "{afile}"], "not a directory"),
    (["train", "--out", "{afile}/sub"], "not writable"),
    (["evaluate", "/no/such/run"], "run_dir"),
    (["evaluate", "{tmp}"], "config.json not found"),
    (["smoke", "--steps", "-5"], "--steps"),
    (["smoke", "--seeds", "0"], "--seeds"),
    (["smoke", "--methods", "erm,bogus"], "--methods"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys, no_training):
    files = _files(tmp_path)
    argv = [a.format(**files) for a in argv]
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("feature-sieve"), err
    assert "error:" in last and message in last, err
    assert "Traceback" not in err


@pytest.mark.parametrize("content", ["garbage", "pickle", "foreign"])
def test_corrupt_resume_checkpoint_is_reported_before_training(tmp_path, capsys, no_training, content):
    out = tmp_path / "run"
    out.mkdir()
    ck = out / "checkpoint.pt"
    if content == "garbage":
        ck.write_bytes(b"\x00" * 64)
    elif content == "pickle":
        torch.save({"method": _Arbitrary()}, ck)  # would need weights_only=False
    else:
        torch.save({"some": "dict"}, ck)
    assert main(["train", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "checkpoint.pt" in err and "--no-resume" in err


def test_evaluate_missing_corrupt_or_mismatched_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train(out)) == 0
    (out / "model.pt").write_bytes(b"junk")
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2
    assert "model.pt" in capsys.readouterr().err
    save_checkpoint(out / "model.pt", {"conv1.weight": torch.zeros(1)}, kind="feature-sieve-model")
    assert main(["evaluate", str(out)]) == 2
    assert "does not fit" in capsys.readouterr().err
    torch.save({"conv1.weight": torch.zeros(1)}, out / "model.pt")  # a bare state dict: not our format
    assert main(["evaluate", str(out)]) == 2
    assert "not a paperworks checkpoint" in capsys.readouterr().err
    save_checkpoint(out / "model.pt", {"w": torch.zeros(1)}, kind="feature-sieve-fit")  # another kind
    assert main(["evaluate", str(out)]) == 2
    assert "holds a 'feature-sieve-fit' checkpoint, expected 'feature-sieve-model" in capsys.readouterr().err
    torch.save({"x": _Arbitrary()}, out / "model.pt")
    assert main(["evaluate", str(out)]) == 2
    assert "not a readable torch checkpoint" in capsys.readouterr().err
    (out / "model.pt").unlink()
    assert main(["evaluate", str(out)]) == 2
    assert "model.pt not found" in capsys.readouterr().err
