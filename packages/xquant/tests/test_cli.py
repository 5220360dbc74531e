"""The `xquant-eval` console script: subcommands, help, and errors."""

import json

import pytest

from xquant.cli import build_parser, main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for cmd in ("ppl", "memory", "latency", "roofline"):
        assert cmd in out


def test_roofline_golden(tmp_path, capsys):
    assert main(["roofline", "--gpu", "paper", "--bits", "2", "--batch", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "roofline.json").read_text())
    assert round(rows[0]["breakeven_context"]) == 2281


def test_memory_analytic(capsys):
    assert main(["memory", "--hidden", "4096", "--kv-dim", "4096", "--layers", "32",
                 "--methods", "xquant-4", "kivi*-2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "0.133" in out and "0.141" in out


def test_ppl_on_text_file(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    assert main(["ppl", "--model", "tiny:llama", "--data", str(f), "--seq-len", "64", "--windows", "2",
                 "--methods", "fp16", "xquant-16", "xquant-2", "--group-size", "32"]) == 0  # fmt: skip
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| xquant")]
    assert "| 0.000 |" in rows[0] or "| -0.000 |" in rows[0]  # lossless xquant-16 == fp16
    assert len(rows) == 2


def test_bad_method_is_a_clear_error(capsys):
    assert main(["memory", "--hidden", "64", "--kv-dim", "64", "--layers", "2", "--methods", "xquant-5"]) == 2
    assert "bits=5 is not supported" in capsys.readouterr().err
    assert main(["memory", "--hidden", "64", "--kv-dim", "64", "--layers", "2", "--methods", "zip-4"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_ppl_on_saved_datasets_folder(tmp_path, capsys):
    from datasets import Dataset, DatasetDict

    text = "Rematerialize keys and values from quantized layer inputs. " * 30
    DatasetDict({"validation": Dataset.from_dict({"text": [text, text]})}).save_to_disk(str(tmp_path / "ds"))
    assert main(["ppl", "--model", "tiny:llama", "--data", f"dataset:{tmp_path / 'ds'}:validation:text",
                 "--seq-len", "64", "--windows", "2", "--methods", "fp16", "xquant-4", "--group-size", "32"]) == 0  # fmt: skip
    assert "| xquant-4 |" in capsys.readouterr().out


def _bad_input_table(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    mem = ["memory", "--hidden", "64", "--kv-dim", "64", "--layers", "2"]
    ppl = [
        "ppl",
        "--model",
        "tiny:llama",
        "--seq-len",
        "32",
        "--windows",
        "2",
        "--group-size",
        "32",
        "--methods",
        "xquant-4",
    ]
    return [
        (
            ["memory", "--hidden", "-1", "--kv-dim", "64", "--layers", "2"],
            "argument --hidden: -1 is out of range",
        ),
        (["memory", "--hidden", "64", "--kv-dim", "64", "--layers", "99999999999"], "argument --layers"),
        (
            ["memory", "--hidden", "64", "--kv-dim", "64"],
            "give --model, or all of --hidden --kv-dim --layers",
        ),
        ([*mem, "--methods", "xquant-5"], "bits=5 is not supported"),
        ([*mem, "--methods", "zip-4"], "unknown method 'zip-4'"),
        ([*mem, "--group-size", "0"], "argument --group-size"),
        ([*mem, "--base-bits", "5"], "argument --base-bits: 5 is not one of"),
        ([*mem, "--seq-len", "abc"], "argument --seq-len: 'abc' is not an integer"),
        (["memory", "--model", "tiny:llama", "--seq-len", "100000", "--batch", "1000"], "more than"),
        (["ppl", "--model", "tiny:gpt9"], "unknown tiny architecture"),
        (["ppl", "--model", str(tmp_path / "nope")], "not tiny:ARCH"),
        (["ppl", "--model", str(corrupt)], "cannot load the model folder"),
        ([*ppl, "--data", str(tmp_path / "missing.txt")], "no such file"),
        ([*ppl, "--data", str(short)], "too short"),
        (["ppl", "--model", "tiny:llama", "--seq-len", "1"], "argument --seq-len"),
        (["ppl", "--model", "tiny:llama", "--windows", "0"], "argument --windows"),
        ([*ppl, "--group-size", "48"], "method xquant-4: group_size=48 does not divide"),
        ([*ppl, "--methods", "xquant-cl-4", "--base-layer", "7"], "method xquant-cl-4: base_layer=7"),
        ([*ppl, "--out", str(blocker)], "--out"),
        ([*ppl, "--out", str(blocker / "sub")], "--out"),
        ([*ppl, "--device", "tpu"], "argument --device: 'tpu'"),
        ([*ppl, "--threads", "0"], "argument --threads"),
        ([*ppl, "--data-root", str(tmp_path / "no-such-dir")], "argument --data-root"),
        (["memory", "--model", "tiny:llama", "--device", "cuda:3"], "--device cuda:3"),
        (["bench", "--scale", "huge"], "argument --scale: invalid choice"),
        (["latency", "--model", "tiny:llama", "--contexts", "0"], "argument --contexts"),
        (["latency", "--model", "tiny:llama", "--steps", "-1"], "argument --steps"),
        (["latency", "--model", "tiny:llama", "--device", "cuda:7"], "--device cuda:7"),
        (["roofline", "--gpu", "custom"], "needs --tflops and --tbps"),
        (["roofline", "--gpu", "custom", "--tflops", "nan", "--tbps", "1"], "'nan' is not a finite number"),
        (["roofline", "--bits", "0"], "argument --bits"),
        (["roofline", "--g", "8", "--d", "4"], "--g 8 is larger than --d 4"),
        (["roofline", "--batch", "0"], "argument --batch"),
        (["roofline", "--gpu", "tpu"], "argument --gpu: invalid choice"),
    ]


def test_bad_input_table(tmp_path, capsys):
    """Issue 17 §4: every bad input exits 2 with one line naming the problem, no traceback, quickly."""
    import time

    for argv, msg in _bad_input_table(tmp_path):
        t0 = time.perf_counter()
        rc = main(argv)
        dt = time.perf_counter() - t0
        err = capsys.readouterr().err
        assert rc == 2, (argv, rc, err)
        last = err.strip().splitlines()[-1]
        assert last.startswith("xquant-eval") and "error:" in last and msg in last, (argv, err)
        assert "Traceback" not in err
        assert dt < 30, (argv, dt)  # refused before any heavy work (no hang on --layers 99999999999)
    assert not (tmp_path / "a-file").is_dir()


def test_runtime_options_and_data_root(tmp_path, capsys):
    """Issue 20.4: --device/--threads/--no-progress on every evaluating command, --data-root, bench."""
    import torch

    (tmp_path / "t.txt").write_text("Rematerialize keys and values. " * 40)
    before = torch.get_num_threads()
    try:
        assert main(["ppl", "--model", "tiny:llama", "--data-root", str(tmp_path), "--data", "t.txt",
                     "--seq-len", "32", "--windows", "2", "--methods", "fp16", "--device", "cpu",
                     "--threads", "1", "--no-progress", "--out", str(tmp_path / "o")]) == 0  # fmt: skip
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert json.loads((tmp_path / "o" / "ppl.json").read_text())[0]["method"] == "fp16"
    for cmd in ("ppl", "memory", "latency"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([cmd, "--help"])
        out = capsys.readouterr().out
        assert "--device" in out and "--threads" in out and "--no-progress" in out, cmd
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--help"])
    assert "--scale" in capsys.readouterr().out


def test_help_is_fast_and_usage_names_the_script():
    """`--help` does not import torch (answers in about a second) and the usage line names the script."""
    import subprocess
    import sys

    code = "import sys; from xquant.cli import main; rc = main(['--help']); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip().endswith("False"), res.stdout + res.stderr
    assert "usage: xquant-eval" in res.stdout


def test_json_output_is_atomic_strict_json(tmp_path, capsys, monkeypatch):
    """No fp16 row: dppl is undefined and written as null (strict JSON); the file appears whole or not at all."""
    out_dir = tmp_path / "sub"
    out = out_dir / "ppl.json"
    f = tmp_path / "t.txt"
    f.write_text("Rematerialize keys and values. " * 40)
    argv = ["ppl", "--model", "tiny:llama", "--data", str(f), "--seq-len", "32", "--windows", "2",
            "--methods", "xquant-4", "--group-size", "32", "--out", str(out_dir)]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["method"] == "xquant-4" and rows[0]["dppl"] is None and rows[0]["ppl"] > 1
    assert [p.name for p in out.parent.iterdir()] == ["ppl.json"]  # no temp file left behind
    # a failure while writing leaves the previous file intact
    import paperworks_shared.files as files

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        from xquant.cli import _emit

        _emit([{"method": "x", "ppl": 1.0}], type("A", (), {"out": str(out_dir), "cmd": "ppl"})())
    assert json.loads(out.read_text()) == rows
    assert [p.name for p in out.parent.iterdir()] == ["ppl.json"]


def test_alias_usage_line_names_the_alias(monkeypatch, capsys):
    """`xquant --help` says `usage: xquant`, `xquant-eval --help` says `usage: xquant-eval` (same program)."""
    for name in ("xquant", "xquant-eval"):
        monkeypatch.setattr("sys.argv", [f"/venv/bin/{name}"])
        assert main(["--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: {name} ")
