"""SpuriousDigits / DigitDominoes builders, to_torch, and the Waterbirds / CelebA folder loaders."""

import numpy as np
import pytest
import torch

from paperworks_shared.group_data import ImageGroupDataset, load_celeba, load_waterbirds
from paperworks_shared.spurious import (
    DigitDominoes,
    SpuriousDigits,
    as_numpy,
    assign_attribute,
    make_digit_dominoes,
    make_spurious_digits,
    to_torch,
)


@pytest.fixture(scope="module")
def digits():
    return make_spurious_digits(train_correlation=0.9, seed=1)


def test_columns_splits_and_group_definition(digits):
    assert set(digits) == {"train", "validation", "test"}
    assert sum(len(digits[s]) for s in digits) == 1797
    for split in digits.values():
        assert {"image", "label", "spurious", "group", "index"} <= set(split.column_names)
        d = as_numpy(split)
        np.testing.assert_array_equal(d["group"], 2 * d["label"] + d["spurious"])
        np.testing.assert_array_equal(d["index"], np.arange(len(split)))
        np.testing.assert_array_equal(d["label"], (d["digit"] >= 5).astype(int))
    assert np.asarray(digits["train"][0]["image"]).shape == (1, 8, 8)


def test_train_correlation_exact_and_eval_decorrelated(digits):
    tr = as_numpy(digits["train"])
    for c in (0, 1):
        a = tr["spurious"][tr["label"] == c]
        assert abs(np.mean(a == c) - 0.9) <= 1 / len(a)  # exact rounding of (1 - rho) * n_class
    te = as_numpy(digits["test"])
    for c in (0, 1):
        a = te["spurious"][te["label"] == c]
        assert abs(a.mean() - 0.5) <= 1 / len(a)


def test_reversed_eval_and_same():
    dd = make_spurious_digits(train_correlation=0.8, eval_mode="reversed", seed=0)
    te = as_numpy(dd["test"])
    assert abs(np.mean(te["spurious"] == te["label"]) - 0.2) < 0.01
    dd = make_spurious_digits(train_correlation=0.8, eval_mode="same", seed=0)
    va = as_numpy(dd["validation"])
    assert abs(np.mean(va["spurious"] == va["label"]) - 0.8) < 0.02


def test_patch_is_where_the_attribute_says(digits):
    d = as_numpy(digits["train"])
    img, a = d["image"], d["spurious"]
    assert np.all(img[a == 1, 0, :2, :2] == 1.0)
    assert np.all(img[a == 0, 0, :2, -2:] == 1.0)


def test_color_kind_writes_digit_into_channel_a():
    d = as_numpy(make_spurious_digits(kind="color", seed=0)["test"])
    img, a = d["image"], d["spurious"]
    assert img.shape[1:] == (2, 8, 8)
    other = img[np.arange(len(a)), 1 - a]
    assert np.all(other == 0) and np.all(img[np.arange(len(a)), a].sum((1, 2)) > 0)


def test_deterministic_by_seed_and_different_across_seeds():
    a = make_spurious_digits(seed=3)["train"].with_format("numpy")
    b = make_spurious_digits(seed=3)["train"].with_format("numpy")
    c = make_spurious_digits(seed=4)["train"].with_format("numpy")
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["group"], b["group"])
    assert not np.array_equal(a["digit"], c["digit"])


def test_scale_upsamples():
    d = as_numpy(make_spurious_digits(scale=4, seed=0)["validation"])
    assert d["image"].shape[1:] == (1, 32, 32)


def test_dominoes_fully_predictive_train_and_random_test():
    dd = make_digit_dominoes(seed=0)
    tr, te = as_numpy(dd["train"]), as_numpy(dd["test"])
    assert tr["image"].shape[1:] == (1, 8, 16)
    np.testing.assert_array_equal(tr["spurious"], tr["label"])  # rho = 1
    assert abs(np.mean(te["spurious"] == te["label"]) - 0.5) < 0.02
    # left half is the digit, right half only the bar
    assert np.all(tr["image"][tr["spurious"] == 1, 0, :, 8:10] == 1.0)
    assert np.all(tr["image"][:, 0, :, 10:14] == 0.0)


def test_to_torch_and_torch_datasets(digits):
    td = to_torch(digits["test"])
    x, y, g, i = td.tensors
    assert x.dtype == torch.float32 and x.shape == (len(digits["test"]), 1, 8, 8)
    assert y.dtype == g.dtype == i.dtype == torch.int64
    ds = SpuriousDigits("test", train_correlation=0.9, seed=1)
    assert torch.equal(ds.tensors[0], x) and len(ds) == len(x)
    assert len(ds[0]) == 4 and ds.group_counts.sum() == len(ds)
    assert DigitDominoes("validation", seed=0)[0][0].shape == (1, 8, 16)


def test_to_torch_missing_group_column_is_a_clear_error(digits):
    ds = digits["test"].remove_columns(["group"])
    with pytest.raises(KeyError, match="no 'group' column"):
        to_torch(ds)
    x, y, g, i = to_torch(ds, require_group=False).tensors
    assert torch.all(g == 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="train_correlation"):
        make_spurious_digits(train_correlation=1.5)
    with pytest.raises(ValueError, match="eval_mode"):
        make_spurious_digits(eval_mode="shuffled")
    with pytest.raises(ValueError, match="kind"):
        make_spurious_digits(kind="texture")
    with pytest.raises(ValueError, match="split"):
        SpuriousDigits("val")


def test_assign_attribute_exact_counts():
    y = np.array([0] * 20 + [1] * 10)
    a = assign_attribute(y, 0.9, np.random.default_rng(0))
    assert (a[:20] == 1).sum() == 2 and (a[20:] == 0).sum() == 1


# ---- on-disk loaders, on tiny synthetic folders in the real layouts ----


def _png(path, color):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 5), color).save(path)


def test_waterbirds_loader(tmp_path):
    rows = [("a/1.png", 1, 0, 1), ("a/2.png", 0, 0, 0), ("b/3.png", 1, 1, 0), ("b/4.png", 0, 2, 1)]
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    for k, (f, y, s, p) in enumerate(rows):
        _png(tmp_path / f, (255 * y, 0, 0))
        lines.append(f"{k},{f},{y},{s},{p},x.jpg")
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    dd = load_waterbirds(tmp_path)
    assert [len(dd[s]) for s in ("train", "validation", "test")] == [2, 1, 1]
    assert dd["train"]["group"] == [3, 0] and dd["validation"]["group"] == [2]
    x, y, g, i = ImageGroupDataset(dd["train"], size=4, normalize=False)[0]
    assert x.shape == (3, 4, 4) and torch.allclose(x[0], torch.ones(4, 4)) and y == 1 and g == 3
    (tmp_path / "b/4.png").unlink()
    with pytest.raises(FileNotFoundError, match="4.png"):
        load_waterbirds(tmp_path)


def test_waterbirds_missing_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        load_waterbirds(tmp_path)


def test_celeba_loader(tmp_path):
    ids = ["000001.jpg", "000002.jpg", "000003.jpg"]
    for k, iid in enumerate(ids):
        _png(tmp_path / "img_align_celeba" / iid, (k * 50, 0, 0))
    (tmp_path / "list_attr_celeba.csv").write_text(
        "image_id,Blond_Hair,Male,Smiling\n000001.jpg,1,-1,1\n000002.jpg,-1,1,1\n000003.jpg,1,1,-1\n"
    )
    (tmp_path / "list_eval_partition.csv").write_text(
        "image_id,partition\n000001.jpg,0\n000002.jpg,0\n000003.jpg,2\n"
    )
    dd = load_celeba(tmp_path)
    assert dd["train"]["label"] == [1, 0] and dd["train"]["spurious"] == [0, 1]
    assert dd["train"]["group"] == [2, 1] and dd["test"]["group"] == [3]
    dd2 = load_celeba(tmp_path, target="Smiling")
    assert dd2["test"]["label"] == [0]
    with pytest.raises(KeyError, match="Wavy_Hair"):
        load_celeba(tmp_path, target="Wavy_Hair")
    (tmp_path / "list_eval_partition.csv").unlink()
    with pytest.raises(FileNotFoundError, match="list_eval_partition.csv"):
        load_celeba(tmp_path)
