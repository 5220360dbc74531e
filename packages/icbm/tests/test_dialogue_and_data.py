"""The interactive dialogue, the synthetic generator and the CUB loader on a tiny fake folder."""

import numpy as np
import pytest
import torch

import icbm
from icbm.data import OccludedConceptsTask, categorical_task, load_cub


def test_dialogue_flow_matches_batch_evaluation(synthetic):
    _, model, _, _, te = synthetic
    i = 5
    d = icbm.InteractiveDialogue(model, te.x[i], policy=icbm.CooP(beta=10), budget=4)
    curve = icbm.evaluate_interventions(model, te.subset([i]), icbm.CooP(beta=10), 4)
    asked = []
    while not d.done:
        q = d.next_query()
        assert set(q.breakdown) == {"uncertainty", "influence", "cost"}
        asked.append(q.index)
        d.answer(q, te.c[i, q.concepts].int().tolist())
    assert asked == curve.queries[0].tolist()
    assert d.next_query() is None
    with pytest.raises(ValueError, match="budget"):
        d.answer(model.groups.names[[g for g in range(16) if g not in asked][0]], [1])
    assert d.prediction().shape == (6,)
    assert float(d.prediction()[te.y[i]]) == pytest.approx(float(curve.true_class_prob[0, -1]), abs=1e-6)


def test_dialogue_dont_know_spends_query_keeps_prediction(synthetic):
    _, model, _, _, te = synthetic
    d = icbm.InteractiveDialogue(model, te.x[0], budget=2)
    before = d.prediction().clone()
    q = d.next_query()
    d.answer(q, None)
    assert d.asked == 1 and torch.equal(before, d.prediction())
    assert d.next_query().index != q.index


def test_synthetic_generator_properties():
    task = OccludedConceptsTask(seed=3)
    a, b = task.sample(500, 0), task.sample(500, 0)
    assert torch.equal(a.x, b.x)  # seeded
    assert a.x.shape == (500, 64) and a.c.shape == (500, 16)
    occ = a.meta["occluded"].float().mean()
    assert 0.25 < float(occ) < 0.45  # p_occlude = 0.35
    # irrelevant concepts do not influence the label
    assert np.all(task.A[task.irrelevant] == 0)
    # occluded concepts carry no signal: their feature block is pure noise
    j = 0
    block = a.x[:, 4 * j : 4 * j + 4]
    sign = 2 * a.c[:, j] - 1
    occl = a.meta["occluded"][:, j]
    corr_vis = float((block[~occl] * sign[~occl, None]).mean(0).abs().sum())
    corr_occ = float((block[occl] * sign[occl, None]).mean(0).abs().sum())
    assert corr_vis > 5 * corr_occ
    cat = categorical_task(seed=0).sample(300, 0)
    assert torch.all(cat.c.reshape(300, 8, 4).sum(-1) == 1)
    fixed = OccludedConceptsTask(seed=0, occlusion="fixed").sample(50, 0)
    assert torch.all(fixed.meta["occluded"][:, 0]) and not fixed.meta["occluded"][:, 1].any()


def _fake_cub(root):
    """3 classes x 4 images, 5 attributes in 2 groups (+ 1 singleton)."""
    from PIL import Image

    (root / "attributes").mkdir(parents=True)
    (root / "images" / "c").mkdir(parents=True)
    names = ["has_color::red", "has_color::blue", "has_color::green", "has_size::big", "has_size::small"]
    (root.parent / "attributes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    imgs, cls, split, att = [], [], [], []
    # per class, per attribute: list of (is_present, certainty) for its 4 images
    table = {
        0: [
            [(1, 3)] * 4,
            [(0, 3)] * 4,
            [(1, 3), (1, 3), (0, 3), (0, 3)],
            [(0, 1)] * 3 + [(1, 4)],
            [(0, 3)] * 4,
        ],
        1: [[(1, 3)] * 4, [(1, 3)] * 4, [(0, 3)] * 4, [(1, 3)] * 4, [(0, 3)] * 4],
        2: [[(0, 3)] * 4, [(1, 3)] * 4, [(0, 3)] * 4, [(0, 3)] * 4, [(0, 3)] * 4],
    }
    iid = 0
    for k in range(3):
        for r in range(4):
            iid += 1
            imgs.append(f"{iid} c/{iid}.png\n")
            cls.append(f"{iid} {k + 1}\n")
            split.append(f"{iid} {1 if r < 4 else 0}\n")
            Image.fromarray(np.full((10, 12, 3), 40 * k, dtype=np.uint8)).save(
                root / "images" / "c" / f"{iid}.png"
            )
            for a in range(5):
                p, cert = table[k][a][r]
                att.append(f"{iid} {a + 1} {p} {cert} 1.0\n")
    (root / "images.txt").write_text("".join(imgs))
    (root / "image_class_labels.txt").write_text("".join(cls))
    (root / "train_test_split.txt").write_text("".join(split))
    (root / "attributes" / "image_attribute_labels.txt").write_text("".join(att))


def test_cub_loader_class_level_majority(tmp_path):
    root = tmp_path / "CUB_200_2011"
    _fake_cub(root)
    cub = load_cub(root, min_class_count=1)
    # "has_size::small" is 0 for every class -> dropped; the rest kept
    assert cub.attribute_names == names_kept()
    assert cub.groups.names == ["has_color", "has_size"]
    assert cub.groups.kind("has_color") == "multilabel" and cub.groups.kind("has_size") == "binary"
    c = cub.concepts.reshape(3, 4, -1)
    assert torch.all(c == c[:, :1])  # class level: identical within a class
    # class 0: green is a 2-2 tie -> 1; big has three invisible zeros (not counted) and one 1 -> 1
    assert c[0, 0].tolist() == [1, 0, 1, 1]
    assert c[1, 0].tolist() == [1, 1, 0, 1]
    assert c[2, 0].tolist() == [0, 1, 0, 0]
    assert cub.visible[0, 3].item() is False and cub.visible[3, 3].item() is True
    inst = load_cub(root, class_level=False, min_class_count=1)
    assert inst.concepts[0, 3] == 0 and inst.concepts[3, 3] == 1
    assert load_cub(root, min_class_count=2).attribute_names == [
        "has_color::red",
        "has_color::blue",
        "has_size::big",
    ]
    x, cc, y, v = cub.images(size=16)[4]
    assert x.shape == (3, 16, 16) and int(y) == 1
    # usable end to end on precomputed features
    feats = torch.randn(12, 8)
    ds = cub.with_features(feats)
    model = icbm.linear_cbm(8, cub.groups, 3)
    icbm.fit(model, ds, epochs=2)
    curve = icbm.evaluate_interventions(model, ds, icbm.CooP(), 2)
    assert curve.accuracy.shape == (3,)


def names_kept():
    return ["has_color::red", "has_color::blue", "has_color::green", "has_size::big"]


def test_cub_loader_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_cub(tmp_path)
