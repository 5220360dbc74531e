"""Download-free spurious-correlation datasets built from scikit-learn's bundled 8x8 digits.

Two builders, both deterministic by seed and returned as `datasets.DatasetDict` (train/validation/test)
with the columns

    image     float32 array, C x H x W (values in [0, 1])
    label     the core label y (binary: digit >= 5)
    spurious  the shortcut attribute a in {0, 1}
    group     2 * label + spurious  (4 groups)
    index     position of the row inside its split (stable id for JTT-style up-weighting)
    digit     the original digit 0..9

* `make_spurious_digits`: the digit plus a shortcut ("patch": a bright 2x2 square in the top-left
  (a=1) or top-right (a=0) corner; "color": the digit is written into colour channel a of a 2-channel
  image; "stripe": a bright vertical bar on the left (a=1) or right (a=0) edge). In training
  P(a = y) = `train_correlation`; in validation/test the shortcut is independent of y ("decorrelated",
  every group equally large) or flipped ("reversed": P(a = y) = 1 - train_correlation), or like train
  ("same").
* `make_digit_dominoes`: the MNIST-CIFAR "dominoes" of Shah et al. 2020 in miniature. An 8x16 image
  whose left half is the digit (complex feature) and right half a "simple" block (a vertical bar on the
  block's left (a=1) or right (a=0) side). Both are fully predictive in training by default
  (train_correlation=1.0); evaluation randomises the simple block, so accuracy there measures reliance
  on the complex feature.

Minority counts are exact (``round((1 - rho) * n_class)`` per class, chosen at random by seed), not
Bernoulli draws, so a given seed always yields the same group sizes.

`to_torch(ds)` turns a split into a `TensorDataset(x, y, group, index)` (the group_DRO loader convention);
`SpuriousDigits` / `DigitDominoes` are the same splits as ready-made `torch.utils.data.Dataset`s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

EVAL_MODES = ("decorrelated", "reversed", "same")
KINDS = ("patch", "color", "stripe")
SPLITS = ("train", "validation", "test")
N_GROUPS = 4


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images.astype(np.float32) / 16.0), d.target.astype(np.int64)


def _check_common(train_correlation: float, eval_mode: str, splits: Sequence[float], seed: int) -> None:
    if not 0.0 <= float(train_correlation) <= 1.0:
        raise ValueError(f"train_correlation must be in [0, 1], got {train_correlation!r}")
    if eval_mode not in EVAL_MODES:
        raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}")
    if len(splits) != 3 or any(s <= 0 for s in splits) or abs(sum(splits) - 1.0) > 1e-6:
        raise ValueError(f"splits must be three positive fractions summing to 1, got {tuple(splits)!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def assign_attribute(y: np.ndarray, p_same: float | None, rng: np.random.Generator) -> np.ndarray:
    """Binary attribute a with an exact share of a == y per class.

    ``p_same`` is the fraction of each class whose attribute equals its label; ``None`` means
    "independent": exactly half of each class gets a = 1 (balanced groups).
    """
    a = np.empty_like(y)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        if p_same is None:
            n_one = len(idx) // 2 + (len(idx) % 2) * int(rng.integers(2))
            a[idx[:n_one]] = 1
            a[idx[n_one:]] = 0
        else:
            n_diff = int(round((1.0 - p_same) * len(idx)))
            a[idx[n_diff:]] = c
            a[idx[:n_diff]] = 1 - c
    return a


def _split_indices(n: int, splits: Sequence[float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    perm = rng.permutation(n)
    n_tr = int(round(splits[0] * n))
    n_va = int(round(splits[1] * n))
    return {"train": perm[:n_tr], "validation": perm[n_tr : n_tr + n_va], "test": perm[n_tr + n_va :]}


def _eval_p_same(train_correlation: float, eval_mode: str) -> float | None:
    return {"decorrelated": None, "reversed": 1.0 - train_correlation, "same": train_correlation}[eval_mode]


def _upsample(img: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return img
    return np.repeat(np.repeat(img, scale, axis=-2), scale, axis=-1)


def _render_spurious(digits: np.ndarray, a: np.ndarray, kind: str, patch_size: int) -> np.ndarray:
    n = len(digits)
    if kind == "color":
        img = np.zeros((n, 2, 8, 8), dtype=np.float32)
        img[np.arange(n), a] = digits
        return img
    img = digits[:, None].copy()
    if kind == "patch":
        p = patch_size
        for i in range(n):
            if a[i] == 1:
                img[i, 0, :p, :p] = 1.0  # top-left
            else:
                img[i, 0, :p, -p:] = 1.0  # top-right
    else:  # stripe
        img[a == 1, 0, :, 0] = 1.0
        img[a == 0, 0, :, -1] = 1.0
    return img


def _to_dataset_dict(parts: dict[str, dict[str, np.ndarray]], info: dict):
    import datasets

    shape = next(iter(parts.values()))["image"].shape[1:]
    features = datasets.Features(
        {
            "image": datasets.Array3D(shape=tuple(int(s) for s in shape), dtype="float32"),
            "label": datasets.ClassLabel(names=["digit<5", "digit>=5"]),
            "spurious": datasets.Value("int64"),
            "group": datasets.Value("int64"),
            "index": datasets.Value("int64"),
            "digit": datasets.Value("int64"),
        }
    )
    out = {}
    for split, cols in parts.items():
        ds = datasets.Dataset.from_dict(
            {k: (v if k == "image" else v.tolist()) for k, v in cols.items()},
            features=features,
            info=datasets.DatasetInfo(description=info["description"], features=features),
        )
        out[split] = ds
    dd = datasets.DatasetDict(out)
    return dd


def _build(kind_fn, train_correlation, eval_mode, seed, splits, description):
    digits, target = _load_digits()
    rng = np.random.default_rng(seed)
    idx = _split_indices(len(digits), splits, rng)
    parts = {}
    for split in SPLITS:
        d, t = digits[idx[split]], target[idx[split]]
        y = (t >= 5).astype(np.int64)
        p_same = train_correlation if split == "train" else _eval_p_same(train_correlation, eval_mode)
        a = assign_attribute(y, p_same, rng)
        parts[split] = {
            "image": kind_fn(d, a).astype(np.float32),
            "label": y,
            "spurious": a.astype(np.int64),
            "group": (2 * y + a).astype(np.int64),
            "index": np.arange(len(y), dtype=np.int64),
            "digit": t,
        }
    return _to_dataset_dict(parts, {"description": description})


def make_spurious_digits(
    train_correlation: float = 0.95,
    eval_mode: str = "decorrelated",
    seed: int = 0,
    kind: str = "patch",
    splits: Sequence[float] = (0.6, 0.1, 0.3),
    patch_size: int = 2,
    scale: int = 1,
):
    """SpuriousDigits as a `datasets.DatasetDict` (train/validation/test); see the module docstring.

    ``kind`` picks the shortcut ("patch", "color", "stripe"); ``scale`` upsamples the 8x8 images by an
    integer factor (nearest neighbour), e.g. for backbones that need larger inputs.
    """
    _check_common(train_correlation, eval_mode, splits, seed)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 1 <= int(patch_size) <= 4:
        raise ValueError(f"patch_size must be 1..4 pixels on the 8x8 digit, got {patch_size!r}")
    if int(scale) < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")

    def render(d, a):
        return _upsample(_render_spurious(d, a, kind, int(patch_size)), int(scale))

    desc = (
        f"SpuriousDigits(kind={kind}, train_correlation={train_correlation}, eval_mode={eval_mode}, "
        f"seed={seed}): sklearn digits, label = digit>=5, group = 2*label + spurious"
    )
    return _build(render, float(train_correlation), eval_mode, int(seed), splits, desc)


def make_digit_dominoes(
    train_correlation: float = 1.0,
    eval_mode: str = "decorrelated",
    seed: int = 0,
    splits: Sequence[float] = (0.6, 0.1, 0.3),
    scale: int = 1,
):
    """DigitDominoes as a `datasets.DatasetDict`: [digit | simple block], 1 x 8 x 16 images.

    The simple block is a 2-pixel-wide full-height bar on its left (a=1) or right (a=0) side; it agrees
    with the label for a ``train_correlation`` share of each class in training.
    """
    _check_common(train_correlation, eval_mode, splits, seed)
    if int(scale) < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")

    def render(d, a):
        n = len(d)
        img = np.zeros((n, 1, 8, 16), dtype=np.float32)
        img[:, 0, :, :8] = d
        img[a == 1, 0, :, 8:10] = 1.0
        img[a == 0, 0, :, 14:16] = 1.0
        return _upsample(img, int(scale))

    desc = (
        f"DigitDominoes(train_correlation={train_correlation}, eval_mode={eval_mode}, seed={seed}): "
        "left half digit (label = digit>=5), right half a simple bar block (spurious)"
    )
    return _build(render, float(train_correlation), eval_mode, int(seed), splits, desc)


def as_numpy(ds) -> dict[str, np.ndarray]:
    """All columns of a split as NumPy arrays (``image`` stacked to N x C x H x W)."""
    return {k: np.asarray(v) for k, v in ds.with_format("numpy")[:].items()}


def to_torch(ds, image_column: str = "image", require_group: bool = True) -> torch.utils.data.TensorDataset:
    """A split as ``TensorDataset(x float32, y int64, group int64, index int64)``.

    Raises a clear error when a needed column is missing (e.g. a dataset without group labels).
    Without ``require_group``, a missing group column becomes all zeros and a missing index column
    becomes ``arange(n)``.
    """
    cols = set(ds.column_names)
    if image_column not in cols:
        raise KeyError(f"dataset has no image column {image_column!r}; columns: {sorted(cols)}")
    if "label" not in cols:
        raise KeyError(f"dataset has no 'label' column; columns: {sorted(cols)}")
    if require_group and "group" not in cols:
        raise KeyError(
            f"dataset has no 'group' column, which this use needs (group metrics / Group DRO); "
            f"columns: {sorted(cols)}. Add one, e.g. group = 2 * label + attribute."
        )
    npds = ds.with_format("numpy")
    x = torch.as_tensor(np.asarray(npds[image_column], dtype=np.float32))
    y = torch.as_tensor(np.asarray(npds["label"], dtype=np.int64))
    n = len(y)
    g = (
        torch.as_tensor(np.asarray(npds["group"], dtype=np.int64))
        if "group" in cols
        else torch.zeros(n, dtype=torch.long)
    )
    i = torch.as_tensor(np.asarray(npds["index"], dtype=np.int64)) if "index" in cols else torch.arange(n)
    return torch.utils.data.TensorDataset(x, y, g, i)


class _SplitDataset(torch.utils.data.Dataset):
    """Shared body of `SpuriousDigits` / `DigitDominoes`: one split, items ``(x, y, group, index)``."""

    builder: Callable[..., Any] | None = None

    def __init__(self, split: str = "train", **kwargs):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        builder = type(self).builder
        if builder is None:
            raise TypeError(f"{type(self).__name__} is abstract: use a concrete split dataset")
        self.hf = builder(**kwargs)[split]
        self.tensors = to_torch(self.hf).tensors
        self.spurious = torch.as_tensor(as_numpy(self.hf.select_columns(["spurious"]))["spurious"])
        self.n_groups = N_GROUPS
        self.num_classes = 2

    def __len__(self) -> int:
        return len(self.tensors[1])

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)

    @property
    def group_counts(self) -> torch.Tensor:
        return torch.bincount(self.tensors[2], minlength=self.n_groups)


class SpuriousDigits(_SplitDataset):
    """`make_spurious_digits(**kwargs)[split]` as a torch Dataset of ``(x, y, group, index)``."""

    builder = staticmethod(make_spurious_digits)


class DigitDominoes(_SplitDataset):
    """`make_digit_dominoes(**kwargs)[split]` as a torch Dataset of ``(x, y, group, index)``."""

    builder = staticmethod(make_digit_dominoes)
