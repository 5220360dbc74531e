"""Issue 20.4: one CLI style. `import icbm` / `icbm --help` do not import torch; --threads is honoured
(the CLI used to force one thread); --device moves the model; `train --out` is a folder."""

import subprocess
import sys

import torch

from icbm.checkpoint import CHECKPOINT_FILE, load_checkpoint
from icbm.cli import main


def test_import_and_help_do_not_import_torch():
    code = (
        "import sys, contextlib, io\n"
        "import icbm\n"
        "assert 'torch' not in sys.modules, 'import icbm pulled torch'\n"
        "from icbm.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['evaluate', '--help'], ['ask', '--help'],\n"
        "             ['demo', '--help'], ['bench', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as f:\n"
        "        assert main(argv) == 0, argv\n"
        "    assert 'usage: icbm' in f.getvalue(), f.getvalue()\n"
        "assert 'torch' not in sys.modules, 'icbm --help pulled torch'\n"
        "assert callable(icbm.linear_cbm) and 'torch' in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_threads_and_device_are_honoured(tmp_path, capsys, monkeypatch):
    before = torch.get_num_threads()
    seen = {}
    import icbm.training as T

    real_fit = T.fit

    def spy(model, data, *a, progress=False, **k):
        seen["threads"] = torch.get_num_threads()
        seen["device"] = next(model.parameters()).device
        seen["progress"] = progress
        return real_fit(model, data, *a, progress=progress, **k)

    monkeypatch.setattr(T, "fit", spy)
    want = 3 if before != 3 else 2
    try:
        argv = ["train", "--n-train", "40", "--epochs", "1", "--out", str(tmp_path / "run")]
        assert main([*argv, "--threads", str(want), "--device", "cpu", "--no-progress"]) == 0
        assert seen == {"threads": want, "device": torch.device("cpu"), "progress": False}
        torch.set_num_threads(before)
        assert main(argv) == 0  # no --threads: torch's own setting is left alone (was forced to 1)
        assert seen["threads"] == before and seen["progress"] is True
    finally:
        torch.set_num_threads(before)
    assert "device=cpu" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "run").iterdir()] == [CHECKPOINT_FILE]
    model, cfg = load_checkpoint(tmp_path / "run")  # the folder or the file inside it
    assert cfg["in_features"] == model.concept_encoder.in_features
    load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)


def test_old_single_file_checkpoints_still_load(tmp_path):
    import icbm

    groups = icbm.ConceptGroups.singletons(3)
    model = icbm.linear_cbm(5, groups, 2)
    cfg = {
        "in_features": 5,
        "n_classes": 2,
        "hidden": None,
        "mode": model.mode,
        "bottleneck": model.bottleneck,
        "intervention_format": model.intervention_format,
        "groups": groups.to_dict(),
        "extra": {},
    }
    torch.save({"config": cfg, "state_dict": model.state_dict()}, tmp_path / "old.pt")
    back, cfg2 = load_checkpoint(tmp_path / "old.pt")
    assert cfg2 == cfg
    for a, b in zip(model.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_meta_round_trip(tmp_path):
    """The config stored with the weights comes back exactly (mutation-pass survivor: `extra or {}`)."""
    import icbm
    from icbm.checkpoint import save_checkpoint

    groups = icbm.ConceptGroups.singletons(3)
    model = icbm.linear_cbm(5, groups, 2, hidden=4)
    save_checkpoint(model, tmp_path / "a.pt", 5, 2, hidden=4)
    save_checkpoint(model, tmp_path / "b.pt", 5, 2, hidden=4, extra={"source": "x"})
    _, a = load_checkpoint(tmp_path / "a.pt")
    _, b = load_checkpoint(tmp_path / "b.pt")
    assert a["extra"] == {} and b["extra"] == {"source": "x"}
    assert (a["in_features"], a["n_classes"], a["hidden"]) == (5, 2, 4)
    assert icbm.ConceptGroups.from_dict(a["groups"]) == groups
