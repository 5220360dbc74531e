"""Issue 17 §4/§5: the CLI error convention (bad-input table), atomic checkpoint folders that refuse to
load when incomplete or corrupt, and an export format that is not a pickled nn.Module."""

import json

import pytest
import torch

import metadock as md
from metadock import checkpoint
from metadock.cli import main
from metadock.export import load_compact, save_compact

TINY = "--img 8 --classes 5 3 3 --per-class 6 --ways 3 --shots 1 --query 2".split()


@pytest.fixture
def ckpt(tmp_path, make_dock):
    dock = md.MetaDOCK(md.Conv4(1, 3, 4, 8), budget=0.5)
    return checkpoint.save(dock, tmp_path / "ck", {"data": "glyphs"})


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the CLI gets as far as building data (i.e. starts work before validating)."""

    def boom(*a, **k):
        raise AssertionError("work started before the arguments were validated")

    monkeypatch.setattr("metadock.cli._pools", boom)


def _legacy_folder(dock, path, *, checksum=True):
    """A checkpoint folder in the pre-shared format (config.json + model.pt, v2 with a file checksum)."""
    path.mkdir()
    torch.save(dock.state_dict(), path / "model.pt")
    cfg = {
        "net": dock.net.config,
        "budget": dock.budget,
        "granularity": dock.granularity,
        "budget_weight": dock.schedule.weight,
        "budget_weight_schedule": dock.schedule.weight_schedule,
        "budget_schedule": dock.schedule.budget_schedule,
        "l1": dock.l1,
    }
    if checksum:
        cfg.update(format="metadock-checkpoint", version=2)
        cfg["model_pt"] = {
            "sha256": checkpoint._sha256(path / "model.pt"),
            "bytes": (path / "model.pt").stat().st_size,
        }
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def _bad_inputs(tmp, ckdir):
    from paperworks_shared.checkpoint import save_checkpoint

    ck = _legacy_folder(md.MetaDOCK(md.Conv4(1, 3, 4, 8), budget=0.5), tmp / "legacy-ok")
    (tmp / "afile").write_text("x")
    (tmp / "busy").mkdir()
    (tmp / "busy" / "notes.txt").write_text("keep me")
    half = tmp / "half"
    half.mkdir()
    (half / "config.json").write_text((ck / "config.json").read_text())  # crash before model.pt
    trunc = tmp / "trunc"
    trunc.mkdir()
    (trunc / "config.json").write_text((ck / "config.json").read_text())
    (trunc / "model.pt").write_bytes((ck / "model.pt").read_bytes()[:200])
    badjson = tmp / "badjson"
    badjson.mkdir()
    (badjson / "config.json").write_text('{"net": ')
    (badjson / "model.pt").write_bytes((ck / "model.pt").read_bytes())
    legacy = tmp / "legacy"  # pre-v2 folder (no checksum) whose model.pt is garbage
    legacy.mkdir()
    cfg = json.loads((ck / "config.json").read_text())
    for k in ("format", "version", "model_pt"):
        cfg.pop(k)
    (legacy / "config.json").write_text(json.dumps(cfg))
    (legacy / "model.pt").write_bytes(b"not a torch file")
    torn = tmp / "torn"
    torn.mkdir()
    (torn / "checkpoint.pt").write_bytes((ckdir / "checkpoint.pt").read_bytes()[:300])
    foreign = tmp / "foreign"
    save_checkpoint(foreign / "checkpoint.pt", {"w": torch.zeros(2)}, kind="icbm")
    plain = tmp / "plain"
    plain.mkdir()
    torch.save({"w": torch.zeros(2)}, plain / "checkpoint.pt")
    flipped = tmp / "flipped"
    flipped.mkdir()
    state, meta = __import__("paperworks_shared.checkpoint").checkpoint.load_checkpoint(
        ckdir / "checkpoint.pt", kind="metadock"
    )
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4)
    state[key] = state[key].clone()
    state[key].view(-1)[3] += 1.0
    save_checkpoint(flipped / "checkpoint.pt", state, kind="metadock", meta=meta)
    out = str(tmp / "new")
    E = ["evaluate", str(ckdir), "--classes", "5", "3", "3", "--per-class", "6", "--query", "2"]
    no_cuda = (
        []
        if torch.cuda.is_available()
        else [
            (["train", "--device", "cuda", "--out", out], "CUDA is not available"),
            (["evaluate", str(ckdir), "--device", "cuda:0"], "CUDA is not available"),
        ]
    )
    return no_cuda + [
        (["train", "--steps", "-3", "--out", out], "--steps"),
        (["train", "--steps", "0", "--out", out], "--steps"),
        (["train", "--budget", "0", "--out", out], "--budget"),
        (["train", "--budget", "1.5", "--out", out], "--budget"),
        (["train", "--outer-lr", "nan", "--out", out], "--outer-lr"),
        (["train", "--inner-lr", "-0.1", "--out", out], "--inner-lr"),
        (["train", "--width", "0", "--out", out], "--width"),
        (["train", "--meta-batch", "0", "--out", out], "--meta-batch"),
        (["train", "--img", "4", "--out", out], "--img"),
        (["train", "--seed", "-1", "--out", out], "--seed"),
        (["train", "--classes", "5", "0", "3", "--out", out], "--classes"),
        (["train", "--data", "cifar-fs", "--out", out], "needs --data-root"),
        (["train", "--data", "cifar-fs", "--data-root", str(tmp / "nodir"), "--out", out], "--data-root"),
        (["train", "--device", "gpu", "--out", out], "--device"),
        (["train", "--device", "cuda:x", "--out", out], "--device"),
        (["train", "--threads", "0", "--out", out], "--threads"),
        (["evaluate", str(ckdir), "--threads", "-2"], "--threads"),
        (["train", "--data", "cifar-fs", "--path", str(tmp / "nodir"), "--out", out], "--path"),
        (["train", "--data", "digits", "--out", out], "only 38 classes"),
        (["train", *TINY[:6], "--ways", "9", "--out", out], "--ways 9"),
        (["train", "--per-class", "10", "--out", out], "--per-class 10"),
        (["train", "--out", str(tmp / "afile" / "ck")], "is not writable: Not a directory"),
        (["train", "--out", str(tmp / "afile")], "not a folder"),
        (["evaluate", str(tmp / "missing")], "no such checkpoint folder"),
        (["evaluate", str(tmp / "afile")], "not a readable torch checkpoint"),
        (["evaluate", str(tmp / "busy")], "checkpoint.pt is missing"),
        (["evaluate", str(torn)], "not a readable torch checkpoint"),
        (["evaluate", str(foreign)], "expected 'metadock'"),
        (["evaluate", str(plain)], "not a paperworks checkpoint"),
        (["evaluate", str(flipped)], "do not match the checksum"),
        (["evaluate", str(half)], "model.pt is missing"),
        (["evaluate", str(trunc)], "does not match the checksum"),
        (["evaluate", str(badjson)], "not valid JSON"),
        (["evaluate", str(legacy)], "cannot be read"),
        ([*E, "--tasks", "0"], "--tasks"),
        ([*E, "--img", "16"], "--img 16 does not match"),
        ([*E, "--ways", "5"], "--ways 5 does not match"),
        ([*E[:2], "--per-class", "4"], "--per-class 4"),
        (["export", str(ckdir), "--out", str(tmp / "afile")], "exists and is not a directory"),
        (["export", str(ckdir), "--out", str(tmp / "afile" / "sub")], "is not writable"),
        (["export", str(ckdir), "--task-index", "-1", "--out", str(tmp / "x")], "--task-index"),
        (["export", str(tmp / "half"), "--out", str(tmp / "x")], "model.pt is missing"),
    ]


def test_bad_input_table(tmp_path, ckpt, capsys, no_work):
    for argv, needle in _bad_inputs(tmp_path, ckpt):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (argv, rc, err)
        assert needle in err, (argv, err)
        assert "Traceback" not in err, (argv, err)
        assert err.strip().splitlines()[-1].startswith(("metadock: error:", "metadock ")), err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "new").exists()
    assert not (tmp_path / "x").exists()


def test_debug_flag_shows_the_traceback(tmp_path):
    from paperworks_shared.cli import UserError

    with pytest.raises(UserError, match="no such checkpoint folder"):
        main(["evaluate", str(tmp_path / "missing"), "--debug"])


def test_checkpoint_round_trip_and_atomic_replace(tmp_path, make_dock, monkeypatch):
    from paperworks_shared.checkpoint import load_checkpoint

    dock = make_dock()
    path = checkpoint.save(dock, tmp_path / "ck")
    assert sorted(p.name for p in path.iterdir()) == ["checkpoint.pt"]  # no temp file left behind
    state, meta = load_checkpoint(path / "checkpoint.pt", kind="metadock")  # the one shared format
    assert meta["net"] == dock.net.config and set(state) == set(dock.state_dict())
    back, cfg = checkpoint.load(path)
    assert cfg["budget"] == dock.budget
    for (k, a), (k2, b) in zip(dock.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    # a crash while writing leaves the old checkpoint intact (atomic rename)
    old = (path / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def crash(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:  # leave a truncated file behind, then die
            fh.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(make_dock(seed=1), path)
    monkeypatch.setattr(torch, "save", real_save)
    assert (path / "checkpoint.pt").read_bytes() == old
    assert sorted(p.name for p in path.iterdir()) == ["checkpoint.pt"]
    checkpoint.load(path)
    # other files in the --out folder are left alone
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("1")
    checkpoint.save(dock, tmp_path / "other")
    assert (tmp_path / "other" / "data.csv").read_text() == "1"
    # a checkpoint is never written where a file is
    (tmp_path / "afile").write_text("x")
    with pytest.raises(checkpoint.CheckpointError, match="not a folder"):
        checkpoint.save(dock, tmp_path / "afile")


def test_legacy_folders_still_load_and_are_checked(tmp_path, make_dock):
    dock = make_dock()
    path = _legacy_folder(dock, tmp_path / "old")
    back, _ = checkpoint.load(path)
    for a, b in zip(dock.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)
    # flipping one byte of model.pt is caught by the legacy checksum
    blob = bytearray((path / "model.pt").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (path / "model.pt").write_bytes(bytes(blob))
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        checkpoint.load(path)


def test_export_is_weights_only_state_dict_plus_config(tmp_path, make_dock, make_task):
    dock = make_dock(hidden=6)
    with torch.no_grad():  # kill the kernels reading channel 2 of conv 2: the export slims a channel
        md.gates.gated_convs(dock)[1][1].psi[:, 2] = -1.0
    task = make_task()
    adapted = dock.adapt(task.support_x, task.support_y, steps=2, lr=0.05)
    compact = adapted.export()
    save_compact(compact, tmp_path / "c.pt", {"task_index": 0})
    blob = torch.load(tmp_path / "c.pt", weights_only=True)  # no pickled classes inside
    assert blob["format"] == "metadock-compact" and isinstance(blob["state_dict"], dict)
    assert not any(isinstance(v, torch.nn.Module) for v in blob.values())
    back = load_compact(tmp_path / "c.pt")
    with torch.no_grad():
        torch.testing.assert_close(back(task.query_x), adapted(task.query_x), rtol=1e-10, atol=1e-12)
    assert md.count(back) == md.count(compact)
    assert [m.weight.shape for m in back.modules() if isinstance(m, torch.nn.Conv2d)][1][1] == 5
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read"):
        load_compact(tmp_path / "bad.pt")


def test_training_divergence_is_an_error_not_a_model(make_dock, make_task):
    dock = make_dock(dtype=torch.float32)
    tr = md.IMAMLTrainer(dock, inner_lr=0.1, inner_steps=1, outer_lr=1e30, meta_batch=1, dense=True)

    class Sampler:
        def sample_batch(self, n):
            return [make_task(dtype=torch.float32)] * n

    with pytest.raises(FloatingPointError, match="diverged"):
        tr.fit(Sampler(), 5, progress=False)
