"""Issue 20.4: one CLI style. `import metadock` / `metadock --help` do not import torch; --device,
--threads, --no-progress act; `export --out` is a folder; every printed result is strict JSON."""

import json
import subprocess
import sys

import torch

from metadock.cli import COMPACT_FILE, main

TINY = "--img 8 --classes 4 3 3 --per-class 4 --ways 2 --shots 1 --query 2".split()


def test_import_and_help_do_not_import_torch():
    code = (
        "import sys, contextlib, io\n"
        "import metadock\n"
        "assert 'torch' not in sys.modules, 'import metadock pulled torch'\n"
        "from metadock.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as f:\n"
        "    rc = main(['--help'])\n"
        "assert rc == 0 and 'usage: metadock' in f.getvalue(), f.getvalue()\n"
        "for cmd in ('train', 'evaluate', 'export', 'bench'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main([cmd, '--help']) == 0\n"
        "assert 'torch' not in sys.modules, 'metadock --help pulled torch'\n"
        "assert callable(metadock.MetaDOCK) and 'torch' in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_train_evaluate_export_end_to_end(tmp_path, capsys, monkeypatch):
    threads = torch.get_num_threads()
    seen = {}
    import metadock.trainers as T

    real_fit = T._Base.fit

    def spy_fit(self, sampler, steps, *a, progress=True, **k):
        seen.setdefault("progress", []).append(progress)
        seen["device"] = self.device
        return real_fit(self, sampler, steps, *a, progress=progress, **k)

    monkeypatch.setattr(T._Base, "fit", spy_fit)
    ck = tmp_path / "ck"
    common = ["--device", "cpu", "--threads", "1", "--no-progress"]
    try:
        assert (
            main(
                [
                    "train",
                    *TINY,
                    "--width",
                    "4",
                    "--pretrain-steps",
                    "1",
                    "--steps",
                    "2",
                    "--inner-steps",
                    "1",
                    "--meta-batch",
                    "1",
                    "--val-tasks",
                    "2",
                    "--val-every",
                    "1",
                    "--out",
                    str(ck),
                    *common,
                ]
            )
            == 0
        )
        assert torch.get_num_threads() == 1  # --threads acted
    finally:
        torch.set_num_threads(threads)
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "cpu" and seen["device"] == torch.device("cpu")
    assert seen["progress"] == [False, False]  # --no-progress reaches both fits
    # one task: the 95% interval is undefined -> null, never NaN (strict JSON)
    assert (
        main(["evaluate", str(ck), *TINY[:-4], "--shots", "1", "--query", "2", "--tasks", "1", *common]) == 0
    )
    text = capsys.readouterr().out
    res = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert res["ci95"] is None and res["tasks"] == 1 and 0.0 <= res["acc"] <= 1.0
    # export --out is a folder: it gets compact.pt + export.json
    assert (
        main(
            [
                "export",
                str(ck),
                *TINY[:-4],
                "--shots",
                "1",
                "--query",
                "2",
                "--out",
                str(tmp_path / "exp"),
                *common,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == sorted(["export.json", COMPACT_FILE])
    summary = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert summary["saved"].endswith(COMPACT_FILE) and 0.0 <= summary["remaining"] <= 1.0
