"""One CLI style (issue 20.4): fast --help, usage names the script, `bench`, runtime args, --out a folder."""

import subprocess
import sys

import pytest

from qtt_longctx import cli


def test_cli_import_does_not_load_torch():
    code = (
        "import sys, qtt_longctx.cli; sys.exit(int(any(m in sys.modules for m in ('torch', 'transformers'))))"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


@pytest.mark.parametrize(
    "argv0, prog", [("/x/bin/qtt", "qtt"), ("qtt-longctx", "qtt-longctx"), ("python", "qtt")]
)
def test_usage_line_names_the_script(argv0, prog):
    assert cli.prog_name(argv0) == prog
    assert cli.build_parser(cli.prog_name(argv0)).format_usage().startswith(f"usage: {prog} ")


def test_bench_subcommand_runs_this_package(monkeypatch):
    import paperworks_shared.bench as bench

    seen = []
    monkeypatch.setattr(bench, "_main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["bench", "--scale", "smoke", "--results", "somewhere"]) == 0
    assert seen == [["--scale", "smoke", "--results", "somewhere", "--package", "qtt-longctx"]]


def test_runtime_args_on_every_evaluating_command():
    p = cli.build_parser()
    for sub in ("run", "sandbox"):
        argv = [sub, "--device", "cpu", "--threads", "2", "--no-progress"]
        if sub == "run":
            argv += ["--model", ".", "--data", __file__]
        a = p.parse_args(argv)
        assert (a.device, a.threads, a.no_progress) == ("cpu", 2, True)


def test_scale_names_match_the_presets():
    from qtt_longctx.sandbox.model import PRESETS

    assert tuple(PRESETS) == cli.SCALE_NAMES


def test_device_cuda_without_cuda_is_a_one_line_error(capsys, monkeypatch):
    import torch

    import qtt_longctx.sandbox as sb

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setattr(
        sb, "sandbox_model", lambda *a, **k: pytest.fail("model loaded before --device was checked")
    )
    rc = cli.main(["sandbox", "--device", "cuda", "--lengths", "4", "--per-length", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "CUDA is not available" in err[-1] and "Traceback" not in "\n".join(err)
