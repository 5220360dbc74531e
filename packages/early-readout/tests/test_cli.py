"""The console script end to end on tiny settings: Group-DRO teacher, CNN student, resume, analysis."""

import json

import pytest

from early_readout.cli import build_parser, main


@pytest.mark.slow
def test_cli_train_resume_and_analyze(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--student", "cnn-tiny", "--seed", "0"]
    argv = [
        "train",
        *common,
        "--teacher",
        "cnn-tiny",
        "--teacher-method",
        "group_dro",
        "--teacher-epochs",
        "1",
        "--epochs",
        "2",
        "--lr",
        "0.01",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= first["test_worst_group"] <= first["test_avg"] <= 1.0
    assert (out / "ckpt" / "last.pt").is_file() and (out / "weights.pt").is_file()
    # rerunning with the same --epochs resumes from the checkpoint: no epoch left, same selected student
    assert main([*argv[:-2], "--teacher-ckpt", str(out / "teacher.pt"), "--out", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again == first
    capsys.readouterr()
    assert main(["analyze-readout", *common, "--student-ckpt", str(out / "student.pt")]) == 0
    printed = capsys.readouterr().out
    res = json.loads(printed[printed.index("{") :])
    assert res["n"] == 1078 and 0.0 <= res["minority_base_rate"] < 0.06


def test_cli_rejects_unknown_dataset_and_layer():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--dataset", "mnist"])
    with pytest.raises(KeyError, match="not found"):
        main(["analyze-readout", "--student", "mlp-tiny", "--readout-layer", "layer9"])
