"""The `tracker-prune` console script follows paperworks_shared.cli (issue 17 §4): bad input -> exit 2, one
line naming the problem, no traceback, nothing trained or written."""

import pytest
import torch

from tracker_prune.cli import main
from tracker_prune.io import save
from tracker_prune.trackers import build_tracker

FAST = [
    "--search-steps",
    "0",
    "--finetune-steps",
    "0",
    "--pool",
    "2",
    "--test-sequences",
    "1",
    "--test-len",
    "2",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    dense = build_tracker("vit")
    save(dense, d / "dense.pt")
    raw = (d / "dense.pt").read_bytes()
    (d / "garbage.pt").write_bytes(b"this is not a checkpoint\n" * 10)
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    torch.save({"weights": torch.zeros(3)}, d / "foreign.pt")
    (d / "a_file").write_text("x")
    (d / "outdir").mkdir()
    (d / "empty_root").mkdir()
    return d


def _table(d):
    dense, out = str(d / "dense.pt"), str(d / "out")
    prune = ["prune", "--model", dense, "--out", out]
    train = ["train", "--out", out]
    return [
        (["train", "--steps", "-3", "--out", out], "--steps"),
        (["train", "--steps", "0", "--out", out], "--steps"),
        ([*train, "--batch", "0"], "--batch"),
        ([*train, "--batch", "-4"], "--batch"),
        ([*train, "--pool", "0"], "--pool"),
        ([*train, "--seed", "-1"], "--seed"),
        ([*train, "--test-len", "1"], "--test-len"),
        ([*train, "--test-sequences", "abc"], "--test-sequences"),
        ([*train, "--arch", "resnet"], "--arch"),
        (["train", "--out", str(d / "a_file" / "x")], "--out"),  # parent is a file: unwritable
        (["train", "--out", str(d / "a_file")], "is not a directory"),  # --out is always a folder
        ([*train, "--device", "tpu"], "--device"),
        ([*train, "--device", "cuda:x"], "--device"),
        ([*train, "--threads", "0"], "--threads"),
        ([*train, "--threads", "-2"], "--threads"),
        ([*train, "--workers", "-1"], "--workers"),
        ([*train, "--data-root", str(d / "nowhere"), "--dataset", "got10k"], "--data-root"),
        ([*train, "--data-root", str(d / "empty_root")], "--data-root needs --dataset"),
        ([*train, "--dataset", "got10k"], "--dataset / --split need --data-root"),
        ([*train, "--dataset", "imagenet"], "--dataset"),
        ([*train, "--data-root", str(d / "empty_root"), "--dataset", "got10k"], "no GOT-10k"),
        ([*train, "--data-root", str(d / "empty_root"), "--dataset", "lasot"], "testing_set.txt"),
        ([*train, "--data-root", str(d / "empty_root"), "--dataset", "lasot", "--split", "val"], "no val"),
        ([*train, "--max-sequences", "0"], "--max-sequences"),
        ([*prune, "--budget", "0"], "--budget"),
        ([*prune, "--budget", "1.5"], "--budget"),
        ([*prune, "--budget", "-0.1"], "--budget"),
        ([*prune, "--budget", "nan"], "--budget"),
        ([*prune, "--budget", "inf"], "--budget"),
        ([*prune, "--min-keep", "-1"], "--min-keep"),
        ([*prune, "--search-steps", "-1"], "--search-steps"),
        ([*prune, "--finetune-steps", "-2"], "--finetune-steps"),
        ([*prune, "--w-attn", "-1"], "--w-attn"),
        ([*prune, "--w-mlp", "nan"], "--w-mlp"),
        ([*prune, "--gate-lr", "0"], "--gate-lr"),
        ([*prune, "--threshold", "1.5", "--method", "chipnet"], "--threshold"),
        ([*prune, "--threshold", "0.5"], "--threshold is only meaningful"),
        ([*prune, "--kind", "volume"], "--kind"),
        ([*prune, "--method", "magic"], "--method"),
        (["prune", "--model", str(d / "missing.pt"), "--out", out], "no such file"),
        (["prune", "--model", str(d / "garbage.pt"), "--out", out, *FAST], "not a readable tracker-prune"),
        (["prune", "--model", str(d / "truncated.pt"), "--out", out, *FAST], "not a readable tracker-prune"),
        (["prune", "--model", str(d / "foreign.pt"), "--out", out, *FAST], "not a tracker-prune checkpoint"),
        (["prune", "--model", str(d / "outdir"), "--out", out], "not a file"),
        (["prune", "--model", dense, "--out", str(d / "a_file" / "p"), *FAST], "--out"),
        ([*prune, "--kind", "params", "--budget", "1e-6", "--min-keep", "0", *FAST], "keeps no unit"),
        (["slim", "--model", dense, "--out", out], "no gated units"),
        (["slim", "--model", str(d / "garbage.pt"), "--out", out], "not a readable tracker-prune"),
        (["evaluate", "--model", str(d / "truncated.pt"), "--test-len", "2"], "not a readable tracker-prune"),
        (["evaluate", "--model", dense, "--test-len", "0"], "--test-len"),
        (["evaluate", "--model", dense, "--device", "gpu"], "--device"),
        (["bench", "--scale", "huge"], "--scale"),
        (["bench", "--results", str(d / "a_file")], "--results"),
        ([], "required"),
        (["fly"], "invalid choice"),
    ]


def test_bad_input_table(files, capsys):
    out = files / "out"
    for argv, needle in _table(files):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (argv, rc, err)
        assert "Traceback" not in err, (argv, err)
        last = err.strip().splitlines()[-1]
        assert last.startswith("tracker-prune") and "error" in last, (argv, err)
        assert needle in last, (argv, needle, last)
        assert not (out / "model.pt").exists() and not (out / "result.json").exists(), argv


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_device_cuda_without_cuda_is_a_clear_error(files, capsys):
    rc = main(["train", "--out", str(files / "out"), "--device", "cuda", "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "CUDA is not available" in err and "Traceback" not in err


def test_threads_option_is_applied(files, capsys):
    """--threads N sets torch's intra-op threads (the old CLI hard-coded 1)."""
    before = torch.get_num_threads()
    try:
        rc = main(
            ["evaluate", "--model", str(files / "dense.pt"), "--threads", "3", "--test-sequences", "1"]
            + ["--test-len", "2", "--no-progress"]
        )
        assert rc == 0 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from tracker_prune.cli import main; import tracker_prune\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_min_keep_zero_emptied_layers_are_reported(files, capsys):
    import json

    rc = main(
        ["prune", "--model", str(files / "dense.pt"), "--out", str(files / "p0"), "--method", "l1"]
        + ["--kind", "params", "--budget", "0.02", "--min-keep", "0", *FAST]
    )
    assert rc == 0
    cap = capsys.readouterr()
    rec = json.loads(cap.out.strip().splitlines()[-1])
    assert rec["emptied"] and all(f"emptied by --min-keep 0: {n}" in cap.err for n in rec["emptied"])
