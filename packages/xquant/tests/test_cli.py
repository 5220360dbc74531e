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
    out = tmp_path / "r.json"
    assert main(["roofline", "--gpu", "paper", "--bits", "2", "--batch", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
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
