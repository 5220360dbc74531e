"""Issue 17/18: bad training data is refused, the model cache is built once under a lock, checkpoints are
atomic and refuse corrupt files, and every CLI mistake ends with exit 2 and one line naming it."""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import icbm
from icbm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from icbm.cli import main
from icbm.data import ConceptDataset, OccludedConceptsTask


@pytest.fixture(scope="module")
def small_data():
    task = OccludedConceptsTask(seed=0)
    tr, _, _ = task.splits(200, 50, 50, seed=0)
    return task, tr


class TupleDataset(Dataset):  # a plain torch Dataset (the DataLoader path of fit)
    def __init__(self, x, c, y):
        self.t = (x, c, y)

    def __len__(self):
        return len(self.t[0])

    def __getitem__(self, i):
        return tuple(t[i] for t in self.t)


def _corrupt(tr, what):
    x, c, y = tr.x.clone(), tr.c.clone(), tr.y.clone()
    if what == "concept 2":
        c[17, 3] = 2.0
    elif what == "concept 0.5":
        c[17, 3] = 0.5
    elif what == "concept nan":
        c[17, 3] = float("nan")
    elif what == "feature nan":
        x[17, 5] = float("nan")
    elif what == "feature inf":
        x[17, 5] = float("inf")
    elif what == "label 6":
        y[17] = 6
    elif what == "label -1":
        y[17] = -1
    return x, c, y


@pytest.mark.parametrize(
    "what, match",
    [
        ("concept 2", "concept labels must be 0 or 1.*row 17, concept 3"),
        ("concept 0.5", "concept labels must be 0 or 1.*row 17, concept 3"),
        ("concept nan", "concept labels must be 0 or 1"),
        ("feature nan", "NaN/inf.*row 17, feature 5"),
        ("feature inf", "NaN/inf.*row 17, feature 5"),
        ("label 6", r"class labels must be in \[0, 6\)"),
        ("label -1", r"class labels must be in \[0, 6\)"),
    ],
)
def test_training_refuses_bad_concepts_features_and_labels(small_data, what, match):
    task, tr = small_data
    x, c, y = _corrupt(tr, what)
    for mode in ("independent", "sequential", "joint"):
        model = icbm.linear_cbm(task.in_features, task.groups, task.n_classes, mode=mode)
        before = [p.detach().clone() for p in model.parameters()]
        with pytest.raises(ValueError, match=match):
            icbm.fit(model, ConceptDataset(x, c, y, None, task.groups), epochs=1)
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # refused before training
    model = icbm.linear_cbm(task.in_features, task.groups, task.n_classes)
    with pytest.raises(ValueError, match=match.split(".*")[0]):
        icbm.fit(model, TupleDataset(x, c, y), epochs=1, batch_size=1000)
    icbm.fit(model, TupleDataset(tr.x, tr.c, tr.y), epochs=1)  # clean data trains


def test_cache_builds_once_under_concurrency(tmp_path, monkeypatch):
    """4 concurrent callers: one trains, the others wait and load the same weights."""
    import icbm.experiments as ex

    monkeypatch.setenv("PAPERWORKS_CACHE", str(tmp_path))
    calls = []
    real_fit = ex.fit

    def counting_fit(*a, **k):
        calls.append(1)
        import time

        time.sleep(0.5)  # keep the builder busy so that the others really wait on the lock
        return real_fit(*a, **k)

    monkeypatch.setattr(ex, "fit", counting_fit)
    task = OccludedConceptsTask(seed=0)
    out, errors = [None] * 4, []

    def worker(i):
        try:
            out[i] = ex.train_synthetic(task, (120, 30, 30), epochs=2)[0]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1
    ref = out[0].state_dict()
    for m in out[1:]:
        assert all(torch.equal(ref[k], v) for k, v in m.state_dict().items())
    folders = [p.name for p in (tmp_path / "icbm-synthetic").iterdir() if p.is_dir()]
    assert len(folders) == 1 and not folders[0].startswith(".")  # no staging folder left behind


@pytest.mark.slow
def test_cache_builds_once_across_four_processes(tmp_path):
    code = textwrap.dedent(
        """
        import sys, torch, icbm.experiments as ex
        from icbm.data import OccludedConceptsTask
        calls = []
        real = ex.fit
        ex.fit = lambda *a, **k: (calls.append(1), real(*a, **k))[1]
        m = ex.train_synthetic(OccludedConceptsTask(seed=0), (120, 30, 30), epochs=2)[0]
        print(len(calls), float(sum(p.sum() for p in m.parameters())))
        """
    )
    env = {**__import__("os").environ, "PAPERWORKS_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-500:] for o in outs]
    lines = [o[0].decode().split() for o in outs]
    assert sum(int(line[0]) for line in lines) == 1  # exactly one process trained
    assert len({line[1] for line in lines}) == 1  # and all got the same weights


def test_checkpoint_is_atomic_and_corrupt_files_are_refused(tmp_path, small_data, monkeypatch):
    task, _ = small_data
    model = icbm.linear_cbm(task.in_features, task.groups, task.n_classes)
    path = save_checkpoint(model, tmp_path / "m.pt", task.in_features, task.n_classes)
    old = path.read_bytes()
    real_save = torch.save

    def crash(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(icbm.linear_cbm(task.in_features, task.groups, 3), path, task.in_features, 3)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    (tmp_path / "trunc.pt").write_bytes(old[: len(old) // 2])
    (tmp_path / "junk.pt").write_bytes(b"junk")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    from paperworks_shared.checkpoint import save_checkpoint as shared_save

    shared_save(tmp_path / "foreign.pt", {"w": torch.zeros(2)}, kind="metadock")
    for name, match in [
        ("trunc.pt", "not a readable torch checkpoint"),
        ("junk.pt", "not a readable torch checkpoint"),
        ("foreign.pt", "expected 'icbm'"),
        ("other.pt", "not an icbm checkpoint"),
        ("missing.pt", "no such checkpoint"),
    ]:
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(tmp_path / name)


def _bad_inputs(tmp, task):
    model = icbm.linear_cbm(task.in_features, task.groups, task.n_classes)
    model.calibrate_percentiles(torch.zeros(4, model.groups.n_concepts))
    ck = str(save_checkpoint(model, tmp / "ck.pt", task.in_features, task.n_classes))
    (tmp / "afile").write_text("x")
    rng = np.random.default_rng(0)
    c = (rng.random((60, 3)) < 0.5).astype(np.float32)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    y = (c[:, 0] > 0.5).astype(np.int64)
    np.savez(tmp / "ok.npz", x=x, c=c, y=y)
    np.savez(tmp / "noc.npz", x=x, y=y)
    np.savez(tmp / "c2.npz", x=x, c=np.where(np.arange(60)[:, None] == 4, 2.0, c), y=y)
    xn = x.copy()
    xn[9, 1] = np.nan
    np.savez(tmp / "xnan.npz", x=xn, c=c, y=y)
    np.savez(tmp / "yfloat.npz", x=x, c=c, y=y + 0.5)
    (tmp / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    (tmp / "bad.json").write_text("{")
    (tmp / "g2.json").write_text('{"groups": {"a": [0], "b": [1]}}')
    (tmp / "trunc.pt").write_bytes((tmp / "ck.pt").read_bytes()[:300])
    np.save(tmp / "in3.npy", np.zeros(3, np.float32))
    from paperworks_shared.checkpoint import save_checkpoint as shared_save

    shared_save(tmp / "foreign.pt", {"w": torch.zeros(2)}, kind="metadock")
    S = ["--n-train", "40"]
    out = str(tmp / "m.pt")
    no_cuda = (
        []
        if torch.cuda.is_available()
        else [
            (["train", "--device", "cuda", "--out", out], "CUDA is not available"),
            (["evaluate", "--checkpoint", ck, "--device", "cuda:0", *S], "CUDA is not available"),
        ]
    )
    return no_cuda + [
        (["train", "--device", "gpu", "--out", out], "--device"),
        (["train", "--threads", "0", "--out", out], "--threads"),
        (["evaluate", "--checkpoint", ck, "--threads", "-1", *S], "--threads"),
        (["demo", "--threads", "0"], "--threads"),
        (["ask", "--checkpoint", ck, "--device", "tpu", *S], "--device"),
        (["bench", "--scale", "huge"], "--scale"),
        (["evaluate", "--checkpoint", str(tmp / "foreign.pt"), *S], "expected 'icbm'"),
        (["train", "--epochs", "-3", "--out", out], "--epochs"),
        (["train", "--epochs", "0", "--out", out], "--epochs"),
        (["train", "--lr", "nan", "--out", out], "--lr"),
        (["train", "--lr", "0", "--out", out], "--lr"),
        (["train", "--hidden", "0", "--out", out], "--hidden"),
        (["train", "--concept-weight", "-1", "--out", out], "--concept-weight"),
        (["train", "--n-train", "5", "--out", out], "--n-train"),
        (["train", "--seed", "-1", "--out", out], "--seed"),
        (["train", "--out", str(tmp / "afile" / "m")], "is not writable: Not a directory"),
        (["train", "--out", str(tmp / "afile")], "exists and is not a directory"),
        (["train", "--data", str(tmp / "none.npz"), "--out", out], "no such file"),
        (["train", "--data", str(tmp / "bad.npz"), "--out", out], "cannot be read as an .npz"),
        (["train", "--data", str(tmp / "noc.npz"), "--out", out], "missing array"),
        (["train", "--data", str(tmp / "c2.npz"), "--out", out], "concept labels must be 0 or 1"),
        (["train", "--data", str(tmp / "xnan.npz"), "--out", out], "NaN/inf"),
        (["train", "--data", str(tmp / "yfloat.npz"), "--out", out], "integer class ids"),
        (
            ["train", "--data", str(tmp / "ok.npz"), "--groups", str(tmp / "bad.json"), "--out", out],
            "--groups",
        ),
        (
            ["train", "--data", str(tmp / "ok.npz"), "--groups", str(tmp / "g2.json"), "--out", out],
            "mismatch",
        ),
        (["evaluate", "--checkpoint", str(tmp / "none.pt"), *S], "no such checkpoint"),
        (["evaluate", "--checkpoint", str(tmp / "afile"), *S], "not a readable torch checkpoint"),
        (["evaluate", "--checkpoint", str(tmp / "trunc.pt"), *S], "not a readable torch checkpoint"),
        (["evaluate", "--checkpoint", str(tmp), *S], "checkpoint.pt: no such checkpoint file"),
        (["evaluate", "--checkpoint", ck, "--budget", "0", *S], "--budget"),
        (["evaluate", "--checkpoint", ck, "--budget", "17", *S], "larger than the number of concept groups"),
        (["evaluate", "--checkpoint", ck, "--beta", "nan", *S], "--beta"),
        (["evaluate", "--checkpoint", ck, "--gamma", "-1", *S], "--gamma"),
        (["evaluate", "--checkpoint", ck, "--cost-budget", "0", *S], "--cost-budget"),
        (["evaluate", "--checkpoint", ck, "--data", str(tmp / "ok.npz")], "features but"),
        (["ask", "--checkpoint", ck, "--index", "99999", *S], "--index 99999 is out of range"),
        (["ask", "--checkpoint", ck, "--index", "-1", *S], "--index"),
        (["ask", "--checkpoint", ck, "--input", str(tmp / "in3.npy"), *S], "features"),
        (["demo", "--budget", "17"], "larger than the number of concept groups"),
        (["demo", "--epochs", "0"], "--epochs"),
        (["bench", "--results", str(tmp / "afile")], "not a directory"),
    ]


def test_bad_input_table(tmp_path, small_data, capsys, monkeypatch):
    task, _ = small_data

    def no_work(*a, **k):
        raise AssertionError("work started before the arguments were validated")

    monkeypatch.setattr("icbm.training.fit", no_work)
    monkeypatch.setattr("icbm.experiments.train_synthetic", no_work)
    monkeypatch.setattr("icbm.evaluate.evaluate_interventions", no_work)
    for argv, needle in _bad_inputs(tmp_path, task):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (argv, rc, err)
        assert needle in err, (argv, err)
        assert "Traceback" not in err, (argv, err)
    assert not (tmp_path / "m.pt").exists()
