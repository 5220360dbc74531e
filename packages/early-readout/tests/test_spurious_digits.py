"""On SpuriousDigits (shared, download-free): data plumbing, readout analysis, and the slow E1 test."""

import pytest
import torch

from early_readout import EarlyReadoutDistiller
from early_readout.analysis import minority_groups, readout_analysis
from early_readout.batches import TensorLoader
from early_readout.data import load_splits
from early_readout.experiment import group_balanced_weights
from early_readout.models import build_model


@pytest.fixture(scope="module")
def splits():
    return load_splits("spurious-digits", seed=0, train_correlation=0.95)


def test_splits_and_minority_groups(splits):
    g = splits.train_groups
    assert splits.input_shape == (1, 8, 8) and splits.n_groups == 4
    # rho = 0.95: groups 1 (y=0, a=1) and 2 (y=1, a=0) are the minority
    assert minority_groups(g, 4) == [1, 2]
    w = group_balanced_weights(g, 4)
    totals = torch.zeros(4).index_add_(0, g, w)
    assert torch.allclose(totals, torch.full((4,), len(g) / 4), rtol=1e-5)


def test_readout_analysis_hand_values():
    wrong = torch.tensor([1, 1, 1, 0, 0, 0, 0, 1], dtype=torch.bool)
    groups = torch.tensor([1, 2, 0, 1, 0, 3, 3, 3])
    a = readout_analysis(wrong, groups, [1, 2])
    assert a["minority_share_of_wrong"] == pytest.approx(2 / 4)
    assert a["minority_recall"] == pytest.approx(2 / 3)
    assert a["minority_base_rate"] == pytest.approx(3 / 8)
    with pytest.raises(ValueError, match="align"):
        readout_analysis(wrong[:3], groups, [1])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_early_readout_wrong_set_is_mostly_minority(seed):
    """E1 (DESIGN.md §3.4): after a few epochs of plain KD, the layer-1 readout's mistakes are minority examples.

    Fails if the readout reads the wrong tensor, if labels/weights are misaligned with dataset indices
    (shuffled loader), if the margin/argmax uses the wrong axis, or if the correct set is up-weighted.
    """
    sp = load_splits("spurious-digits", seed=seed, train_correlation=0.95)
    x, y, g, idx = sp.train.tensors
    torch.manual_seed(seed)
    # a teacher that knows the training labels (as a memorising ERM teacher does); the test is about the readout
    t_logits = torch.nn.functional.one_hot(y, 2).float() * 4 - 2
    student = build_model("mlp-tiny", sp.input_shape, 2)
    d = EarlyReadoutDistiller(
        t_logits,
        student,
        2,
        len(y),
        readout_layer="layer1",
        readout_lr=0.05,
        readout_epochs=3,
        reweigh_every=0,
    )
    dl = TensorLoader(sp.train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
    d.fit(dl, epochs=3, lr=5e-3, weight_decay=1e-2, selector="last", progress=False)
    stats = d.reweigh(dl)
    pred = d.readout_predictions(dl)
    assert torch.equal(pred["idx"], torch.arange(len(y)))
    a = readout_analysis(pred["wrong"], g, minority_groups(g, 4), pred["margin"])
    assert a["minority_base_rate"] < 0.06
    assert a["minority_share_of_wrong"] >= 0.8, a  # prototype: 0.96-1.00 (base rate 0.05)
    assert a["minority_recall"] >= 0.8, a
    # exactly the readout's wrong set was up-weighted, by dataset index
    assert torch.equal(stats["wrong_idx"].sort().values, torch.nonzero(pred["wrong"]).squeeze(1))
    assert torch.equal(d.weights > 1, pred["wrong"])


def test_teacher_cache_builds_once_under_concurrent_callers(tmp_path, monkeypatch):
    """Issue 17 §5: four concurrent callers of the teacher cache all succeed with ONE training
    (paperworks_shared.cache.get_or_build: file lock + private staging + atomic publish)."""
    import threading

    import early_readout.experiment as ex

    monkeypatch.setenv("PAPERWORKS_CACHE", str(tmp_path))
    calls = []
    real = ex.train_teacher

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(ex, "train_teacher", counting)
    s = ex.Settings(teacher_epochs=1)
    sp = load_splits("spurious-digits", seed=0, train_correlation=0.95)
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = ex.get_teacher_logits(s, 0, sp)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1
    assert all(torch.equal(r, results[0]) for r in results)
    assert results[0].shape == (len(sp.train), 2)
    # no staging or temp folders left beside the published one
    ns = tmp_path / "early-readout"
    assert sorted(p.name for p in ns.iterdir() if not p.name.endswith(".lock")) == [
        p.name for p in ns.iterdir() if p.is_dir() and (p / "DONE").is_file()
    ]
