import numpy as np
import pytest
import torch
from PIL import Image

import metadock as md
from metadock import data


def test_glyphs_are_deterministic_and_class_structured():
    a, b = data.glyphs(6, 4, 16, seed=3), data.glyphs(6, 4, 16, seed=3)
    xa, xb = np.asarray(a[:]["image"]), np.asarray(b[:]["image"])
    assert xa.shape == (24, 1, 16, 16) and np.array_equal(xa, xb)
    assert not np.array_equal(xa, np.asarray(data.glyphs(6, 4, 16, seed=4)[:]["image"]))
    # same-class samples are closer to each other than to other classes (it is a learnable task)
    f = xa.reshape(6, 4, -1)
    within = np.mean(
        [np.abs(f[c, i] - f[c, j]).mean() for c in range(6) for i in range(4) for j in range(i + 1, 4)]
    )
    between = np.mean([np.abs(f[c, 0] - f[d, 0]).mean() for c in range(6) for d in range(c + 1, 6)])
    assert within < between


def test_class_split_is_disjoint_and_sampler_relabels():
    ds = data.glyphs(12, 6, 12, seed=0)
    sp = data.class_split(ds, 6, 3, 3, seed=1)
    sets = [set(sp[s]["label"]) for s in ("train", "validation", "test")]
    assert [len(s) for s in sets] == [6, 3, 3]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    pool = md.ClassPool.from_dataset(sp["test"])
    task = md.TaskSampler(pool, n_way=3, k_shot=2, q_query=3, seed=0).sample()
    assert task.support_y.tolist() == [0, 0, 1, 1, 2, 2] and len(task.query_x) == 9
    assert set(task.classes) == sets[2]
    with pytest.raises(ValueError, match="n_way=4 but the split has only 3"):
        md.TaskSampler(pool, n_way=4)
    with pytest.raises(ValueError, match="asked for"):
        data.class_split(ds, 10, 2, 2)


def test_fixed_tasks_are_reproducible():
    pool = md.ClassPool.from_dataset(data.glyphs(8, 5, 12, seed=0))
    a = md.fixed_tasks(pool, 3, 3, 1, 2, seed=9)
    b = md.fixed_tasks(pool, 3, 3, 1, 2, seed=9)
    assert all(torch.equal(x.query_x, y.query_x) and x.classes == y.classes for x, y in zip(a, b))


def test_sklearn_digits_rotation_classes():
    ds = data.sklearn_digits(rotations=(0, 90, 180, 270), size=12)
    labels = set(ds["label"])
    assert len(labels) == 40 - 2  # 180-degree 6 and 9 dropped
    assert 6 * 4 + 2 not in labels and 9 * 4 + 2 not in labels


def _png(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 10), color).save(path)


def test_cifar_fs_layout_loader(tmp_path):
    for split, names in (("train", ["a", "b"]), ("val", ["c"]), ("test", ["d", "e"])):
        (tmp_path / "splits" / "bertinetto").mkdir(parents=True, exist_ok=True)
        (tmp_path / "splits" / "bertinetto" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for i, n in enumerate(names):
            for j in range(3):
                _png(tmp_path / "data" / n / f"{j}.png", (40 * i, 255, 0))
    dd = data.load_cifar_fs(tmp_path, size=8)
    assert dd["train"].num_rows == 6 and set(dd["test"]["label"]) == {0, 1}
    x = np.asarray(dd["train"][0]["image"])
    assert x.shape == (3, 8, 8) and abs(x[1].mean() - 1.0) < 1e-6  # green channel full
    (tmp_path / "splits" / "bertinetto" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val.txt"):
        data.load_cifar_fs(tmp_path)


def test_mini_imagenet_layout_loader(tmp_path):
    for split in ("train", "val", "test"):
        rows = ["filename,label"]
        for c in ("n01", "n02"):
            for j in range(2):
                fn = f"{split}{c}{j}.jpg"
                _png(tmp_path / "images" / fn, (0, 0, 200))
                rows.append(f"{fn},{c}{split}")
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    dd = data.load_mini_imagenet(tmp_path, size=8)
    assert dd["validation"].num_rows == 4 and sorted(set(dd["train"]["label"])) == [0, 1]
    (tmp_path / "images" / "testn010.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        data.load_mini_imagenet(tmp_path)
