"""Few-shot data without downloads: procedural stroke glyphs, rotated scikit-learn digits, and loaders
for the CIFAR-FS and mini-ImageNet folder layouts from a local path.

Every builder returns `datasets` objects with columns image (float32, C x H x W in [0, 1]) and label.
Classes, not images, are split into meta-train / meta-val / meta-test.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from datasets import Array3D, Dataset, DatasetDict, Features, Value


def _features(c: int, h: int, w: int) -> Features:
    return Features({"image": Array3D((c, h, w), "float32"), "label": Value("int64")})


def _bezier(p0, p1, p2, n=32):
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def glyphs(
    n_classes: int = 100,
    per_class: int = 20,
    img_size: int = 28,
    seed: int = 0,
    strokes: tuple[int, int] = (2, 4),
    noise: float = 0.05,
) -> Dataset:
    """Procedural glyph classes: class c is 2-4 quadratic Bezier strokes drawn from rng(seed, c);
    each sample applies a random affine (+-10 deg, 0.9-1.1 scale, +-2 px shift), stroke-width
    jitter and Gaussian noise. Unlimited classes, deterministic by seed."""
    if n_classes < 1 or per_class < 1 or img_size < 8:
        raise ValueError("n_classes >= 1, per_class >= 1 and img_size >= 8 are required")
    yy, xx = np.mgrid[0:img_size, 0:img_size].astype(np.float32)
    grid = np.stack([xx.ravel(), yy.ravel()], 1)  # (P, 2)
    g2 = (grid**2).sum(1)
    images = np.zeros((n_classes * per_class, 1, img_size, img_size), np.float32)
    labels = np.repeat(np.arange(n_classes), per_class)
    for c in range(n_classes):
        crng = np.random.default_rng([seed, c])
        k = crng.integers(strokes[0], strokes[1] + 1)
        pts = np.concatenate([_bezier(*crng.uniform(0.15, 0.85, (3, 2))) for _ in range(k)])  # unit square
        srng = np.random.default_rng([seed, c, 1])
        for j in range(per_class):
            ang = np.deg2rad(srng.uniform(-10, 10))
            sc = srng.uniform(0.9, 1.1)
            rot = sc * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
            p = (pts - 0.5) @ rot.T * img_size + img_size / 2 + srng.uniform(-2, 2, 2)
            width = srng.uniform(0.8, 1.6) * img_size / 28
            p = p.astype(np.float32)
            d2 = g2[:, None] + (p**2).sum(1)[None] - 2 * grid @ p.T  # squared distances, as one matmul
            d = np.sqrt(np.maximum(d2.min(1), 0))
            img = np.clip(1.0 - (d - width), 0, 1).reshape(img_size, img_size)
            img = np.clip(img + srng.normal(0, noise, img.shape), 0, 1)
            images[c * per_class + j, 0] = img
    return Dataset.from_dict({"image": images, "label": labels}, features=_features(1, img_size, img_size))


def sklearn_digits(rotations: tuple[int, ...] = (0, 90, 180, 270), size: int = 16) -> Dataset:
    """scikit-learn's bundled 8x8 digits (real handwriting, no download) with rotations as extra
    classes (Omniglot-style): class = digit * len(rotations) + rotation index. The 180-degree
    variants of 6 and 9 are dropped (they would be each other)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    imgs, labels = [], []
    for ri, rot in enumerate(rotations):
        if rot % 90:
            raise ValueError(f"rotations must be multiples of 90 degrees, got {rot}")
        xr = torch.rot90(x, rot // 90, dims=(2, 3))
        for digit in range(10):
            if rot == 180 and digit in (6, 9):
                continue
            sel = torch.as_tensor(d.target == digit)
            imgs.append(xr[sel])
            labels += [digit * len(rotations) + ri] * int(sel.sum())
    return Dataset.from_dict(
        {"image": torch.cat(imgs).numpy(), "label": labels}, features=_features(1, size, size)
    )


def class_split(ds: Dataset, train: int, val: int, test: int, seed: int = 0) -> DatasetDict:
    """Split the CLASSES of `ds` into disjoint meta-train / meta-validation / meta-test sets."""
    classes = sorted(set(ds["label"]))
    if train + val + test > len(classes):
        raise ValueError(f"asked for {train}+{val}+{test} classes but the dataset has {len(classes)}")
    perm = np.random.default_rng(seed).permutation(classes)
    parts = {
        "train": perm[:train],
        "validation": perm[train : train + val],
        "test": perm[train + val : train + val + test],
    }
    labels = np.asarray(ds["label"])
    return DatasetDict({k: ds.select(np.nonzero(np.isin(labels, v))[0]) for k, v in parts.items()})


def _load_images(files: list[Path], size: int) -> np.ndarray:
    from PIL import Image

    out = np.zeros((len(files), 3, size, size), np.float32)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size)), np.float32).transpose(2, 0, 1) / 255.0
    return out


def load_cifar_fs(root: str | Path, size: int = 32, split_dir: str = "splits/bertinetto") -> DatasetDict:
    """CIFAR-FS from a local folder: `<root>/data/<class>/*.png` and
    `<root>/<split_dir>/{train,val,test}.txt` (one class name per line), as in Bertinetto et al."""
    root = Path(root)
    out = {}
    for split, fname in (("train", "train.txt"), ("validation", "val.txt"), ("test", "test.txt")):
        sf = root / split_dir / fname
        if not sf.is_file():
            raise FileNotFoundError(
                f"CIFAR-FS split file missing: {sf} (expected layout <root>/data/<class>/*.png, <root>/{split_dir}/{{train,val,test}}.txt)"
            )
        names = [ln.strip() for ln in sf.read_text().splitlines() if ln.strip()]
        files, labels = [], []
        for ci, name in enumerate(names):
            d = root / "data" / name
            imgs = sorted(d.glob("*.png")) + sorted(d.glob("*.jpg"))
            if not imgs:
                raise FileNotFoundError(f"CIFAR-FS class folder {d} is missing or has no images")
            files += imgs
            labels += [ci] * len(imgs)
        out[split] = Dataset.from_dict(
            {"image": _load_images(files, size), "label": labels}, features=_features(3, size, size)
        )
    return DatasetDict(out)


def load_mini_imagenet(root: str | Path, size: int = 84) -> DatasetDict:
    """mini-ImageNet (Ravi & Larochelle split) from a local folder: `<root>/images/*.jpg` and
    `<root>/{train,val,test}.csv` with header `filename,label`."""
    root = Path(root)
    out = {}
    for split, fname in (("train", "train.csv"), ("validation", "val.csv"), ("test", "test.csv")):
        f = root / fname
        if not f.is_file():
            raise FileNotFoundError(
                f"mini-ImageNet split file missing: {f} (expected <root>/images/*.jpg and <root>/{{train,val,test}}.csv)"
            )
        with f.open() as fh:
            rows = list(csv.DictReader(fh))
        if not rows or not {"filename", "label"} <= set(rows[0]):
            raise ValueError(f"{f} must have a header 'filename,label'")
        names = sorted({r["label"] for r in rows})
        files = [root / "images" / r["filename"] for r in rows]
        missing = [p for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} images listed in {f} are missing, e.g. {missing[0]}")
        labels = [names.index(r["label"]) for r in rows]
        out[split] = Dataset.from_dict(
            {"image": _load_images(files, size), "label": labels}, features=_features(3, size, size)
        )
    return DatasetDict(out)
