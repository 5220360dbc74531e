"""The console script: end to end on tiny settings, the train-weighted average, and a bad-input table.

Every bad input must exit 2 with one line naming the problem (paperworks_shared.cli convention), found
before any training (train_teacher is replaced by a function that fails the test if it is called).
"""

import json

import pytest
import torch

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
    assert 0.0 <= first["test_worst_group_acc"] <= first["test_avg"] <= 1.0
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


def _tiny_train(out, *extra):
    return [
        "train",
        "--teacher-epochs",
        "1",
        "--epochs",
        "1",
        "--method",
        "kd",
        "--selector",
        "last",
        "--out",
        str(out),
        *extra,
    ]


def test_cli_reports_a_finite_train_weighted_average(tmp_path, capsys):
    """Issue 18: test_weighted_avg was always NaN (no train group counts were passed). It must equal
    sum_g p_train(g) * acc_g, computed here independently from the saved student."""
    from early_readout.data import load_splits
    from early_readout.models import build_model

    out = tmp_path / "run"
    assert main(_tiny_train(out)) == 0
    res = json.loads((out / "metrics.json").read_text())
    sp = load_splits("spurious-digits", 0, 0.95)
    student = build_model("mlp-tiny", sp.input_shape, 2)
    from paperworks_shared.checkpoint import load_checkpoint

    state, meta = load_checkpoint(out / "student.pt", kind="early-readout-student")
    assert meta == {"arch": "mlp-tiny"}
    student.load_state_dict(state)
    x, y, g, _ = sp.test.tensors
    with torch.no_grad():
        pred = student(x).argmax(1)
    counts = torch.bincount(sp.train_groups, minlength=4).double()
    assert res["train_group_counts"] == counts.long().tolist()
    acc = torch.stack([(pred[g == k] == y[g == k]).double().mean() for k in range(4)])
    expected = float((counts / counts.sum() * acc).sum())
    assert res["test_weighted_avg"] == pytest.approx(expected, abs=1e-9)
    assert res["test_avg"] == pytest.approx(float((pred == y).double().mean()), abs=1e-9)
    # the balanced test set makes the two averages differ: a copy of test_avg would fail the line above
    assert abs(res["test_weighted_avg"] - res["test_avg"]) > 0 or acc.std() == 0


@pytest.fixture
def no_training(monkeypatch):
    import early_readout.teacher as t

    def boom(*a, **k):
        raise AssertionError("training started before the bad input was reported")

    monkeypatch.setattr(t, "train_teacher", boom)


def _bad_files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    trunc = tmp_path / "trunc.pt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, trunc)
    trunc.write_bytes(trunc.read_bytes()[:200])
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": {}, "meta": _Arbitrary()}, pickled)  # needs weights_only=False: refused
    from paperworks_shared.checkpoint import save_checkpoint

    wrong = tmp_path / "wrong_arch.pt"  # a teacher checkpoint of another architecture
    save_checkpoint(wrong, {"fc.weight": torch.zeros(3, 3)}, kind="early-readout-teacher")
    wrong_student = tmp_path / "wrong_student.pt"
    save_checkpoint(wrong_student, {"fc.weight": torch.zeros(3, 3)}, kind="early-readout-student")
    old = tmp_path / "old_format.pt"  # the package's pre-issue-20.7 teacher file: refused, named
    torch.save({"state_dict": {"fc.weight": torch.zeros(3, 3)}, "meta": {}}, old)
    afile = tmp_path / "afile"
    afile.write_text("x")
    return {
        "garbage": garbage,
        "trunc": trunc,
        "pickled": pickled,
        "wrong": wrong,
        "wrong_student": wrong_student,
        "old": old,
        "afile": afile,
    }


class _Arbitrary:
    pass


BAD = [
    (["train", "--epochs", "-3"], "--epochs"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--batch-size", "-64"], "--batch-size"),
    (["train", "--teacher-epochs", "-1"], "--teacher-epochs"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "-0.1"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--weight-decay", "-1"], "--weight-decay"),
    (["train", "--temperature", "0"], "--temperature"),
    (["train", "--kd-alpha", "1.5"], "--kd-alpha"),
    (["train", "--train-correlation", "2"], "--train-correlation"),
    (["train", "--max-weight", "0.5"], "--max-weight"),
    (["train", "--reweigh-every", "-1"], "--reweigh-every"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--image-size", "0"], "--image-size"),
    (["train", "--dataset", "mnist"], "--dataset"),
    (["train", "--data-root", "/no/such/dir"], "--data-root"),
    (["train", "--dataset", "waterbirds"], "needs --data-root"),
    (["train", "--teacher-ckpt", "/no/such/teacher.pt"], "--teacher-ckpt"),
    (["train", "--teacher-ckpt", "{garbage}"], "not a readable torch checkpoint"),
    (["train", "--teacher-ckpt", "{trunc}"], "not a readable torch checkpoint"),
    (["train", "--teacher-ckpt", "{pickled}"], "not a readable torch checkpoint"),
    (["train", "--teacher-ckpt", "{wrong}"], "does not fit"),
    (["train", "--teacher-ckpt", "{wrong_student}"], "holds a 'early-readout-student' checkpoint"),
    (["train", "--teacher-ckpt", "{old}"], "not a paperworks checkpoint"),
    (["train", "--readout-layer", "layer9"], "readout layer 'layer9' not found"),
    (["train", "--student", "no-such-model"], "--student 'no-such-model'"),
    (["train", "--out", "{afile}"], "not a directory"),
    (["train", "--out", "{afile}/sub"], "not writable"),
    (["analyze-readout", "--student-ckpt", "/no/such.pt"], "--student-ckpt"),
    (["analyze-readout", "--student-ckpt", "{garbage}"], "not a readable torch checkpoint"),
    (["analyze-readout", "--student-ckpt", "{wrong_student}"], "does not fit"),
    (["analyze-readout", "--student-ckpt", "{wrong}"], "holds a 'early-readout-teacher' checkpoint"),
    (["analyze-readout", "--readout-epochs", "0"], "--readout-epochs"),
    (["analyze-readout", "--readout-lr", "nan"], "--readout-lr"),
    (["smoke", "--epochs", "-5"], "--epochs"),
    (["smoke", "--seed", "x"], "--seed"),
    # issue 20.4 runtime options on every subcommand that trains or evaluates
    (["train", "--device", "gpu0"], "--device"),
    (["train", "--threads", "0"], "--threads"),
    (["train", "--threads", "-2"], "--threads"),
    (["train", "--workers", "-1"], "--workers"),
    (["analyze-readout", "--device", "tpu"], "--device"),
    (["analyze-readout", "--threads", "x"], "--threads"),
    (["smoke", "--device", "cuda:x"], "--device"),
    (["smoke", "--threads", "0"], "--threads"),
    (["bench", "--scale", "huge"], "--scale"),
    # issue 23: local pretrained weights
    (["train", "--pretrained", "/no/such/w.pth"], "--pretrained"),
    (["train", "--pretrained", "{garbage}"], "not a readable torch weights file"),
    (["train", "--pretrained", "{wrong}"], "holds no state dict of tensors"),
    (["train", "--teacher-pretrained", "{garbage}"], "--teacher-pretrained"),
    (["analyze-readout", "--pretrained", "{trunc}"], "--pretrained"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys, no_training):
    files = _bad_files(tmp_path)
    argv = [a.format(**files) for a in argv]
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("early-readout"), err
    assert "error:" in last and message in last, err
    assert "Traceback" not in err


def test_corrupt_resume_checkpoint_is_reported_before_training(tmp_path, capsys, no_training):
    out = tmp_path / "run"
    (out / "ckpt").mkdir(parents=True)
    (out / "ckpt" / "last.pt").write_bytes(b"\x00" * 64)
    assert main(["train", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "last.pt" in err and "not a readable torch checkpoint" in err and "--no-resume" in err


def test_debug_flag_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="readout layer 'layer9' not found"):
        main(["train", "--readout-layer", "layer9", "--out", str(tmp_path), "--debug"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("cmd", ["train", "analyze-readout", "smoke"])
def test_cuda_without_cuda_is_one_line_before_any_work(cmd, tmp_path, capsys, no_training):
    argv = [cmd, "--device", "cuda"] + (["--out", str(tmp_path / "o")] if cmd == "train" else [])
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("early-readout: error: --device cuda: CUDA is not available"), last


def test_runtime_args_are_applied(tmp_path, capsys, monkeypatch):
    """--threads sets torch's thread count, --no-progress silences every bar, --device picks the device."""
    import early_readout.distill as dist

    seen = {}
    real_init = dist.EarlyReadoutDistiller.__init__

    def spy(self, *a, **k):
        real_init(self, *a, **k)
        seen["device"] = self.device

    monkeypatch.setattr(dist.EarlyReadoutDistiller, "__init__", spy)
    before = torch.get_num_threads()
    try:
        assert main(_tiny_train(tmp_path / "run", "--no-progress", "--threads", "1", "--device", "cpu")) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert "it/s" not in err and "s/it" not in err and "epochs" not in err, err
    assert seen["device"] == torch.device("cpu")


def test_bench_subcommand_exists():
    args = build_parser().parse_args(["bench", "--scale", "smoke"])
    assert args.cmd == "bench" and args.bench_package == "early-readout"


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from early_readout.cli import build_parser\n"
        "build_parser().format_help()\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_help_is_available():
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--help"])
    assert e.value.code == 0
