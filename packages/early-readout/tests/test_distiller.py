"""EarlyReadoutDistiller: loss equivalences, index bookkeeping, readout isolation, persistence, errors."""

import copy

import pytest
import torch
import torch.nn.functional as F
from er_helpers import FixedHead, IdentityStudent, loader, planted_data
from torch import nn

from early_readout import EarlyReadoutDistiller
from early_readout.losses import kd_loss
from early_readout.models import MLP, SmallCNN
from early_readout.weighting import exp_pow_weights


def _pair(num_train=64, seed=0):
    torch.manual_seed(seed)
    teacher = MLP(2, 2, (16,))
    student = MLP(2, 2, (8, 8))
    return teacher, student


@pytest.mark.parametrize("normalize", ["none", "batch", "global"])
def test_unit_weights_equal_plain_kd_exactly(normalize):
    teacher, student = _pair()
    x = torch.randn(16, 2)
    y = torch.randint(0, 2, (16,))
    idx = torch.arange(16) * 3
    d = EarlyReadoutDistiller(
        teacher, student, 2, 64, readout_layer="layer1", normalize=normalize, batch_schema=("x", "y", "idx")
    )
    loss, _ = d.loss((x, y, idx))
    with torch.no_grad():
        t = teacher(x)
    s = student(x)
    plain = kd_loss(s, t, 3.0).mean()
    assert torch.equal(loss, plain)
    ref = F.kl_div(F.log_softmax(s / 3, 1), F.softmax(t / 3, 1), reduction="batchmean") * 9
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_weights_multiply_kd_and_ce_terms_and_batch_normalisation():
    teacher, student = _pair()
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    idx = torch.tensor([5, 1, 7, 2])
    d = EarlyReadoutDistiller(
        teacher,
        student,
        2,
        8,
        readout_layer="layer1",
        kd_alpha=0.25,
        normalize="batch",
        batch_schema=("x", "y", "idx"),
    )
    w = torch.tensor([1.0, 3.0, 1.0, 1.0, 1.0, 10.0, 1.0, 2.0])
    d.set_weights(w)
    loss, _ = d.loss((x, y, idx))
    s, t = student(x), teacher(x).detach()
    per = 0.25 * kd_loss(s, t, 3.0) + 0.75 * F.cross_entropy(s, y, reduction="none")
    wb = w[idx]
    assert loss.item() == pytest.approx(((wb * per).sum() / wb.sum()).item(), rel=1e-5)
    d.normalize = "none"
    assert d.loss((x, y, idx))[0].item() == pytest.approx((wb * per).mean().item(), rel=1e-5)
    d.normalize = "global"
    assert d.loss((x, y, idx))[0].item() == pytest.approx((wb / w.mean() * per).mean().item(), rel=1e-5)


def test_training_the_readout_changes_no_student_parameter_or_buffer():
    torch.manual_seed(0)
    teacher, student = SmallCNN(1, 2, 8), SmallCNN(1, 2, 4)
    student.train()
    x = torch.randn(48, 1, 8, 8)
    y = torch.randint(0, 2, (48,))
    dl = loader(x, y, torch.zeros(48, dtype=torch.long), batch_size=16)
    d = EarlyReadoutDistiller(
        teacher, student, 2, 48, readout_layer="layer1", readout_lr=0.5, readout_epochs=3
    )
    before = copy.deepcopy(student.state_dict())
    stats = d.reweigh(dl)
    after = student.state_dict()
    assert stats["readout_train_loss"] > 0
    assert d.head.resolved_kind == "basicblock"
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(p.requires_grad for p in student.parameters())
    assert all(p.grad is None for p in student.parameters())
    assert student.training and student.layer1.training  # modes restored


def test_faithful_freeze_bug_reproduces_official_side_effect():
    torch.manual_seed(0)
    teacher, student = SmallCNN(1, 2, 8), SmallCNN(1, 2, 4)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 2, (32,))
    d = EarlyReadoutDistiller(teacher, student, 2, 32, readout_layer="layer1", faithful_freeze_bug=True)
    d.reweigh(loader(x, y, torch.zeros(32, dtype=torch.long)))
    frozen = {n for n, p in student.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in student.named_parameters() if n.startswith(("stem.", "layer1."))}


def _hand_distiller(n, **kw):
    student = IdentityStudent()
    teacher = IdentityStudent()
    head = FixedHead(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))  # logit difference 2*x0: predicts sign(x0)
    return EarlyReadoutDistiller(
        teacher,
        student,
        2,
        n,
        readout_layer="layer1",
        readout_head=head,
        readout_lr=0.0,
        readout_momentum=0.0,
        **kw,
    )


def test_weights_follow_dataset_indices_under_shuffling():
    x, y, g, planted = planted_data(200, 20)
    d = _hand_distiller(200)
    stats = d.reweigh(loader(x, y, g, batch_size=32, shuffle=True))
    # hand computation: p = softmax([-x0, x0]); wrong exactly on the planted (label-flipped) set
    p = torch.softmax(torch.stack([-x[:, 0], x[:, 0]], 1), 1)
    m = (p[:, 0] - p[:, 1]).abs()
    expected = torch.ones(200)
    expected[planted] = exp_pow_weights(m[planted], 0.05, 4.0)
    assert torch.equal(stats["wrong_idx"].sort().values, planted)
    # the planted examples form the minority groups (y != easy feature): the readout analysis sees that
    assert stats["readout_minority_share"] == 1.0 and stats["readout_minority_recall"] == 1.0
    assert torch.allclose(d.weights, expected, rtol=1e-5)
    # the weights are looked up by idx inside loss(): a batch in any order gets its own examples' weights
    order = torch.randperm(200)[:16]
    d.normalize = "none"
    loss, _ = d.loss((x[order], y[order], g[order], order))
    per = kd_loss(d.student(x[order]), d.teacher(x[order]))
    assert loss.item() == pytest.approx((expected[order] * per).mean().item(), rel=1e-5)


def test_weights_persist_for_correct_examples_and_reset_option():
    x, y, g, planted = planted_data(100, 10)
    d = _hand_distiller(100)
    d.reweigh(loader(x, y, g))
    w1 = d.weights.clone()
    # second round: un-flip half of the planted labels -> those are now read out correctly
    y2 = y.clone()
    fixed = planted[:5]
    y2[fixed] = 1 - y2[fixed]
    d.reweigh(loader(x, y2, g))
    assert torch.equal(d.weights[fixed], w1[fixed])  # persistence (official)
    d2 = _hand_distiller(100, persist_weights=False)
    d2.reweigh(loader(x, y, g))
    d2.reweigh(loader(x, y2, g))
    assert torch.all(d2.weights[fixed] == 1.0)
    assert torch.allclose(d2.weights[planted[5:]], w1[planted[5:]])


def test_random_control_matches_count_and_values_not_indices():
    x, y, g, planted = planted_data(300, 30)
    d = _hand_distiller(300, control="random", seed=1)
    st = d.reweigh(loader(x, y, g))
    up = st["upweighted_idx"]
    assert len(up) == 30 and len(set(up.tolist())) == 30
    assert len(set(up.tolist()) & set(planted.tolist())) < 10
    ref = _hand_distiller(300)
    ref.reweigh(loader(x, y, g))
    assert torch.allclose(d.weights[up].sort().values, ref.weights[planted].sort().values)


def test_max_weight_caps_and_affine_formula():
    x, y, g, planted = planted_data(100, 10)
    d = _hand_distiller(100, weight_fn="affine_exp", max_weight=5.0)
    d.reweigh(loader(x, y, g))
    assert d.weights.max().item() <= 5.0
    assert torch.all(d.weights[planted] > 1.0)


def test_teacher_is_frozen_in_eval_mode_and_gets_no_grads():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    teacher.train()
    before = copy.deepcopy(teacher.state_dict())
    student = MLP(2, 2, (8,))
    x, y, g, _ = planted_data(64, 4)
    d = EarlyReadoutDistiller(teacher, student, 2, 64, readout_layer="layer1", readout_head="linear")
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    d.fit(loader(x, y, g), epochs=2, lr=0.05, weight_decay=0.0, selector="last", progress=False)
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_cached_teacher_logits_give_identical_losses():
    teacher, student = _pair()
    x, y, g, _ = planted_data(64, 4)
    d = EarlyReadoutDistiller(teacher, student, 2, 64, readout_layer="layer1")
    batch = (x[:8], y[:8], g[:8], torch.arange(8))
    live, _ = d.loss(batch)
    d.cache_teacher_logits(loader(x, y, g))
    cached, _ = d.loss(batch)
    assert torch.allclose(live, cached)


def test_resume_from_checkpoint_reproduces_uninterrupted_run(tmp_path):
    x, y, g, _ = planted_data(96, 10)

    def make():
        torch.manual_seed(3)
        teacher, student = MLP(2, 2, (16,)), MLP(2, 2, (8, 8))
        return EarlyReadoutDistiller(teacher, student, 2, 96, readout_layer="layer1", readout_head="linear")

    def dl():
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y, g, torch.arange(96)), batch_size=16, shuffle=True
        )

    torch.manual_seed(10)
    full = make()
    full.fit(dl(), epochs=4, lr=0.05, selector="last", progress=False)
    torch.manual_seed(10)
    part = make()
    part.fit(dl(), epochs=2, lr=0.05, selector="last", progress=False, checkpoint_dir=tmp_path)
    torch.manual_seed(99)  # a fresh process would have another RNG state: the checkpoint restores it
    resumed = make()
    hist = resumed.fit(dl(), epochs=4, lr=0.05, selector="last", progress=False, checkpoint_dir=tmp_path)
    assert [e["epoch"] for e in hist.epochs] == [0, 1, 2, 3]
    assert torch.equal(resumed.weights, full.weights)
    for k, v in full.student.state_dict().items():
        assert torch.equal(v, resumed.student.state_dict()[k]), k


def test_bad_inputs_raise_clear_errors(tmp_path):
    teacher, student = _pair()
    with pytest.raises(KeyError, match=r"readout layer 'layer7' not found.*layer1, layer1\.0"):
        EarlyReadoutDistiller(teacher, student, 2, 10, readout_layer="layer7")
    with pytest.raises(ValueError, match="different class counts"):
        EarlyReadoutDistiller(MLP(2, 3, (4,)), student, 2, 10, readout_layer="layer1")
    with pytest.raises(ValueError, match="precomputed teacher logits"):
        EarlyReadoutDistiller(torch.zeros(11, 2), student, 2, 10, readout_layer="layer1")
    # a teacher whose class count cannot be read off the module is caught at the first batch
    opaque = nn.Sequential(nn.Linear(2, 3))
    d = EarlyReadoutDistiller(opaque, student, 2, 10, readout_layer="layer1", batch_schema="x,y,idx")
    with pytest.raises(ValueError, match="must both output num_classes"):
        d.loss((torch.randn(2, 2), torch.tensor([0, 1]), torch.tensor([0, 1])))
    d = EarlyReadoutDistiller(teacher, student, 2, 10, readout_layer="layer1")
    with pytest.raises(IndexError, match="another dataset"):
        d.loss((torch.randn(2, 2), torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([3, 10])))
    other = EarlyReadoutDistiller(teacher, student, 2, 12, readout_layer="layer1")
    other.save_weights(tmp_path / "w.pt")
    with pytest.raises(ValueError, match="dataset of 12 examples"):
        d.load_weights(tmp_path / "w.pt")
    with pytest.raises(ValueError, match="another size"):
        d.set_weights(torch.ones(12))
    with pytest.raises(ValueError, match=r"2 fields but batch_schema \('x', 'y', 'g', 'idx'\)"):
        d.loss((torch.randn(2, 2), torch.tensor([0, 1])))


class _Evil:
    """Unpickling this would run code under weights_only=False."""

    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_checkpoints_are_weights_only_safe_and_foreign_pickles_refused(tmp_path, capsys):
    from early_readout.distill import load_checkpoint
    from early_readout.errors import CheckpointError

    x, y, g, _ = planted_data(64, 4)
    torch.manual_seed(0)
    d = EarlyReadoutDistiller(
        MLP(2, 2, (8,)), MLP(2, 2, (8,)), 2, 64, readout_layer="layer1", readout_head="linear"
    )
    d.fit(loader(x, y, g), epochs=2, lr=0.05, selector="last", progress=False, checkpoint_dir=tmp_path)
    raw = torch.load(tmp_path / "last.pt", weights_only=True)  # the format itself is weights_only-safe
    assert raw["format"] == "paperworks-checkpoint" and raw["kind"] == "early-readout-fit"
    blob = raw["state"]
    assert blob["epoch"] == 1 and len(blob["history"]["epochs"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp files left behind
    torch.save({"distiller": _Evil(), "epoch": 0}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        d.fit(loader(x, y, g), epochs=3, lr=0.05, selector="last", progress=False, checkpoint_dir=tmp_path)
    assert "unpickled arbitrary code" not in capsys.readouterr().out
    torch.save({"some": "dict"}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="not a paperworks checkpoint"):
        load_checkpoint(tmp_path / "last.pt")
    (tmp_path / "w.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        d.load_weights(tmp_path / "w.pt")
    # a weights file is not a fit checkpoint and vice versa (kinds are checked)
    d.save_weights(tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="expected 'early-readout-fit'"):
        load_checkpoint(tmp_path / "w.pt")
    from paperworks_shared.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "fit.pt", {"epoch": 0}, kind="early-readout-fit")
    with pytest.raises(CheckpointError, match="expected 'early-readout-weights'"):
        d.load_weights(tmp_path / "fit.pt")
