"""The CLI error convention, atomic writes and the locked cache (issue 17 §4, §5)."""

import argparse
import json
import os
import subprocess
import sys
import textwrap

import pytest

from paperworks_shared.cache import get_or_build, is_complete
from paperworks_shared.cli import (
    UserError,
    add_debug_flag,
    check_out_dir,
    check_out_file,
    fraction,
    int_list,
    positive_float,
    positive_int,
    run_cli,
)
from paperworks_shared.files import (
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    publish_dir,
    read_jsonl,
    strict_json,
)


def _demo(argv):
    p = argparse.ArgumentParser(prog="demo")
    p.add_argument("--steps", type=positive_int, default=1)
    p.add_argument("--lr", type=positive_float, default=0.1)
    p.add_argument("--budget", type=fraction, default=0.5)
    p.add_argument("--lengths", type=int_list, default=[8])
    p.add_argument("--out")
    p.add_argument("--fail", choices=["user", "missing", "bug"])
    add_debug_flag(p)
    a = p.parse_args(argv)
    if a.out:
        check_out_dir(a.out)
    if a.fail == "user":
        raise UserError("checkpoint 'x.pt' is corrupt:\nunpickling failed")
    if a.fail == "missing":
        open("/nonexistent/dir/file.pt")
    if a.fail == "bug":
        raise ZeroDivisionError("division by zero")
    print("worked")
    return 0


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--steps", "-3"], "--steps: -3 is out of range"),
        (["--steps", "abc"], "--steps: 'abc' is not an integer"),
        (["--lr", "nan"], "--lr: 'nan' is not a finite number"),
        (["--lr", "0"], "--lr: 0 is out of range"),
        (["--budget", "1.5"], "--budget: 1.5 is out of range"),
        (["--budget", "0"], "--budget: 0 is out of range"),
        (["--lengths", "8,abc"], "--lengths: in '8,abc': 'abc' is not an integer"),
        (["--out", "/proc/version/x"], "--out '/proc/version/x'"),
        (["--fail", "user"], "checkpoint 'x.pt' is corrupt: unpickling failed"),
        (["--fail", "missing"], "No such file or directory: /nonexistent/dir/file.pt"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, needle, capsys):
    rc = run_cli(_demo, argv, prog="demo")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("demo: error:")


def test_bugs_keep_the_traceback_and_debug_reraises(capsys):
    assert run_cli(_demo, ["--fail", "bug"], prog="demo") == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "a bug" in err
    with pytest.raises(UserError):
        run_cli(_demo, ["--fail", "user", "--debug"], prog="demo")
    assert run_cli(_demo, [], prog="demo") == 0 and "worked" in capsys.readouterr().out
    assert run_cli(_demo, ["--help"], prog="demo") == 0


def test_keyboard_interrupt_exits_130(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_cli(interrupted, [], prog="demo") == 130
    assert "interrupted" in capsys.readouterr().err


def test_out_checks_run_before_work(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        check_out_dir(f)
    with pytest.raises(UserError, match="is a directory"):
        check_out_file(tmp_path)
    assert check_out_dir(tmp_path / "new" / "deep").is_dir()
    assert list((tmp_path / "new" / "deep").iterdir()) == []  # the write probe is removed


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError, match=r"non-finite number nan at \$\.b\[1\]"):
        atomic_write_json(target, {"b": [1.0, float("nan")]})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temp file left behind
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    with pytest.raises(ValueError):
        strict_json({"x": float("inf")})


def test_jsonl_append_and_torn_tail(tmp_path, capsys):
    path = tmp_path / "out.jsonl"
    append_jsonl(path, {"i": 0})
    append_jsonl(path, {"i": 1})
    with open(path, "a") as f:
        f.write('{"i": 2, "partial')  # a crash mid-write
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}]
    assert "torn last line" in capsys.readouterr().err
    path.write_text('{"i": 0}\nnot json\n{"i": 2}\n')
    with pytest.raises(ValueError, match=r"out\.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_publish_dir_never_exposes_a_half_built_folder(tmp_path):
    dest = tmp_path / "model"

    def crash(staging):
        (staging / "weights").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_dir(crash, dest)
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    publish_dir(lambda s: (s / "weights").write_text("v1"), dest)
    publish_dir(lambda s: (s / "weights").write_text("v2"), dest)
    assert (dest / "weights").read_text() == "v2" and [p.name for p in tmp_path.iterdir()] == ["model"]


_WORKER = textwrap.dedent(
    """
    import sys, time
    from paperworks_shared.cache import get_or_build
    def build(staging):
        with open(sys.argv[1], "a") as log:
            log.write("built\\n")
        time.sleep(1.0)  # long enough that the others arrive while it builds
        (staging / "artefact").write_text("payload")
    path, cached = get_or_build("concurrency", {"k": 1}, build)
    print(path, cached, (path / "artefact").read_text())
    """
)


def test_four_processes_share_one_build(tmp_cache, tmp_path):
    log = tmp_path / "builds.log"
    env = {**os.environ, "PAPERWORKS_CACHE": str(tmp_cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(log)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    assert log.read_text().count("built") == 1
    assert all(o.strip().endswith("payload") for o in outs)
    assert sum(o.split()[1] == "False" for o in outs) == 1  # exactly one builder, three waited and reused
    path, cached = get_or_build("concurrency", {"k": 1}, lambda s: 1 / 0)
    assert cached and is_complete(path)


_TRAINER = textwrap.dedent(
    """
    from paperworks_shared.train import TrainSettings, train_tiny_lm
    s = TrainSettings(steps=3, seq_len=32, batch_size=2, warmup=1, eval_batches=1)
    t = train_tiny_lm("llama", settings=s, train_texts=["abc " * 200], val_texts=["abd " * 50],
                      config_overrides={"num_hidden_layers": 1}, progress=False)
    print("HIT" if t.cache_hit else "TRAINED", t.path)
    """
)


@pytest.mark.slow
def test_four_processes_training_the_same_tiny_lm_all_succeed(tmp_cache):
    env = {**os.environ, "PAPERWORKS_CACHE": str(tmp_cache), "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TRAINER],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-2000:] for o in outs]
    kinds = [o[0].split()[0] for o in outs]
    assert kinds.count("TRAINED") == 1 and kinds.count("HIT") == 3
    assert len({o[0].split()[1] for o in outs}) == 1


def test_runtime_args_and_bench_command(capsys):
    import torch

    from paperworks_shared.cli import add_bench_command, add_runtime_args, apply_runtime_args

    p = argparse.ArgumentParser(prog="demo")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_bench_command(sub, "demo-pkg")
    train = sub.add_parser("train")
    add_runtime_args(train)
    a = p.parse_args(["train", "--threads", "1", "--device", "cpu", "--no-progress"])
    before = torch.get_num_threads()
    try:
        assert apply_runtime_args(a) == torch.device("cpu") and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert a.no_progress
    b = p.parse_args(["bench"])
    assert b.scale in ("smoke", "cpu", "full", "gpu") and b.bench_package == "demo-pkg"
    assert p.parse_args(["bench", "--scale", "full"]).scale == "full"
    for bad in (["train", "--device", "tpu"], ["train", "--threads", "0"], ["bench", "--scale", "huge"]):
        assert run_cli(lambda argv: p.parse_args(argv) and 0, bad, prog="demo") == 2
    if not torch.cuda.is_available():
        rc = run_cli(
            lambda argv: apply_runtime_args(p.parse_args(argv)) and 0,
            ["train", "--device", "cuda"],
            prog="demo",
        )
        assert rc == 2 and "CUDA is not available" in capsys.readouterr().err
