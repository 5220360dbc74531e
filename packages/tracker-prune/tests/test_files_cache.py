"""Nothing half-written, nothing clobbered (issue 17 §5): atomic checkpoints, one builder per cache entry."""

import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from tracker_prune.io import CheckpointError, load, save
from tracker_prune.trackers import build_tracker

CFG = {"dense": 1, "batch": 2, "pool": 2, "search": 1, "chip_gate_lr": 0.2}


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    a = build_tracker("cnn")
    save(a, tmp_path / "m.pt")
    before = (tmp_path / "m.pt").read_bytes()
    real_save = torch.save

    def crash(obj, f, *args, **kw):  # dies half-way through writing
        real_save(obj, f, *args, **kw)
        with open(f, "r+b") as fh:
            fh.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save(build_tracker("cnn"), tmp_path / "m.pt")
    monkeypatch.undo()
    assert (tmp_path / "m.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind
    load(tmp_path / "m.pt")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    save(build_tracker("cnn"), tmp_path / "m.pt")
    raw = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(CheckpointError, match="t.pt"):
        load(tmp_path / "t.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert blob["format"] == "paperworks-checkpoint" and blob["kind"] == "tracker-prune/tracker"
    blob["state"] = {k: v for k, v in list(blob["state"].items())[:-1]}
    torch.save(blob, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="does not match"):
        load(tmp_path / "s.pt")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.pt")
    blob["kind"] = "metadock/learner"  # another package's checkpoint: refused, naming what it holds
    torch.save(blob, tmp_path / "k.pt")
    with pytest.raises(CheckpointError, match="metadock/learner"):
        load(tmp_path / "k.pt")


def test_old_format_checkpoint_still_loads(tmp_path):
    from tracker_prune.io import describe

    torch.manual_seed(0)
    m = build_tracker("cnn").eval()
    torch.save({"spec": describe(m), "state_dict": m.state_dict()}, tmp_path / "old.pt")
    z, x = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    assert torch.equal(load(tmp_path / "old.pt")(z, x)["box"], m(z, x)["box"])


def test_no_unsafe_unpickling_in_the_package():
    src = Path(__file__).resolve().parents[1] / "src" / "tracker_prune"
    for f in src.glob("*.py"):
        text = f.read_text()
        assert "weights_only=False" not in text, f
        assert "pickle.load" not in text, f


def _worker(cache: str, q) -> None:
    import os

    os.environ["PAPERWORKS_CACHE"] = cache
    from tracker_prune import bench_util

    calls = []
    real = bench_util.train

    def counting_train(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    bench_util.train = counting_train
    try:
        from tracker_prune.train import make_pool

        m, hit = bench_util.dense_tracker("cnn", 0, CFG, make_pool(2, length=4))
        q.put((hit, len(calls), sum(float(p.sum()) for p in m.parameters())))
    except BaseException as e:  # pragma: no cover - reported to the parent
        q.put(("error", repr(e), 0.0))


def test_four_concurrent_cache_users_train_once(tmp_path):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(r[0] != "error" for r in results), results
    assert sum(r[1] for r in results) == 1  # exactly one process trained
    assert sorted(r[0] for r in results) == [False, True, True, True]
    assert len({round(r[2], 6) for r in results}) == 1  # all got the same weights
    ns = tmp_path / "tracker-prune-dense"
    assert not [p for p in ns.iterdir() if "staging" in p.name or p.name.endswith(".tmp")]
