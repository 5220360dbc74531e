"""Loaders for the real spurious-correlation benchmarks from their usual on-disk layouts (no downloads).

* **Waterbirds** (Sagawa et al. 2020, the group_DRO release)::

      root/metadata.csv            img_id,img_filename,y,split,place[,place_filename]
      root/<img_filename>          e.g. 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg

  split 0/1/2 = train/validation/test; label y (1 = waterbird), spurious = place (1 = water background).

* **CelebA**, in either of its two common layouts (detected from the files present):

  - the *official* release (Liu et al. 2015; what torchvision's ``CelebA`` reads)::

      root/list_attr_celeba.txt    line 1: the image count; line 2: the 40 attribute names;
                                   then "000001.jpg -1  1  1 -1 ..." (values -1/1, runs of spaces)
      root/list_eval_partition.txt "000001.jpg 0"                   (0/1/2 = train/validation/test)
      root/img_align_celeba/<image_id>                              (178 x 218 JPEGs)

  - the *Kaggle* / group_DRO CSV layout::

      root/list_attr_celeba.csv    image_id,<40 attributes in {-1, 1}>
      root/list_eval_partition.csv image_id,partition
      root/img_align_celeba/<image_id>  (or img_align_celeba/img_align_celeba/, as the Kaggle zip unpacks)

  label = ``target`` attribute (default Blond_Hair), spurious = ``confounder`` (default Male).
  ``root`` may also be the ``celeba`` folder of torchvision's download (the same official files).

Both return a `datasets.DatasetDict` (train/validation/test) with columns ``image`` (a lazily decoded
`datasets.Image`), ``path``, ``label``, ``spurious``, ``group = 2 * label + spurious`` and ``index``, i.e.
the same columns as the `paperworks_shared.spurious` builders. Labels and groups come from the metadata
files only: no image is opened to build a split or to count its groups (`group_counts`,
`ImageGroupDataset.groups`). A missing metadata file or image raises `FileNotFoundError` naming the path;
a malformed metadata line raises `ValueError` naming the file and line. `ImageGroupDataset` wraps a split
as a torch Dataset of ``(x, y, group, index)`` that decodes one image per access (so DataLoader workers
decode in parallel and a full epoch's memory stays bounded), with resizing and ImageNet normalisation.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

SPLIT_NAMES = {0: "train", 1: "validation", 2: "test"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no data rows")
    return rows


def _need_columns(rows: list[dict[str, str]], cols: tuple[str, ...], path: Path) -> None:
    missing = [c for c in cols if c not in rows[0]]
    if missing:
        raise KeyError(f"{path} lacks column(s) {missing}; it has {list(rows[0])}")


def _build(root: Path, records: list[tuple[str, int, int, int]], check_files: bool, name: str):
    """records: (relative image path, split id, label, spurious)."""
    import datasets

    if check_files:
        for rel, *_ in records:
            if not (root / rel).is_file():
                raise FileNotFoundError(f"{name} image listed in the metadata is missing: {root / rel}")
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "path": datasets.Value("string"),
            "label": datasets.Value("int64"),
            "spurious": datasets.Value("int64"),
            "group": datasets.Value("int64"),
            "index": datasets.Value("int64"),
        }
    )
    out = {}
    for sid, split in SPLIT_NAMES.items():
        sel = [r for r in records if r[1] == sid]
        paths = [str(root / r[0]) for r in sel]
        y = [r[2] for r in sel]
        a = [r[3] for r in sel]
        out[split] = datasets.Dataset.from_dict(
            {
                "image": paths,
                "path": paths,
                "label": y,
                "spurious": a,
                "group": [2 * yi + ai for yi, ai in zip(y, a)],
                "index": list(range(len(sel))),
            },
            features=features,
        )
    return datasets.DatasetDict(out)


def _split_id(value: str, path: Path) -> int:
    s = int(value)
    if s not in SPLIT_NAMES:
        raise ValueError(f"{path}: split/partition must be 0, 1 or 2; got {value!r}")
    return s


def _binary(value: str, col: str, path: Path) -> int:
    v = int(float(value))
    if v not in (0, 1):
        raise ValueError(f"{path}: column {col!r} must be 0/1; got {value!r}")
    return v


def load_waterbirds(root: str | Path, check_files: bool = True):
    """Waterbirds from ``root/metadata.csv`` + image folders; see the module docstring."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Waterbirds root folder not found: {root}")
    meta = _require(root / "metadata.csv", "Waterbirds metadata")
    rows = _read_csv(meta)
    _need_columns(rows, ("img_filename", "y", "split", "place"), meta)
    recs = [
        (
            r["img_filename"],
            _split_id(r["split"], meta),
            _binary(r["y"], "y", meta),
            _binary(r["place"], "place", meta),
        )
        for r in rows
    ]
    return _build(root, recs, check_files, "Waterbirds")


def _read_official_attrs(path: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The official ``list_attr_celeba.txt``: a count line, a names line, then ``id v1 v2 ...``."""
    with open(path) as f:
        count_line = f.readline()
        names = f.readline().split()
        if not count_line.strip().isdigit() or not names:
            raise ValueError(
                f"{path}: expected the official header (line 1: image count, line 2: attribute names); "
                f"got {count_line.strip()[:60]!r}"
            )
        rows = []
        for lineno, line in enumerate(f, start=3):
            parts = line.split()  # runs of spaces, as in the release
            if not parts:
                continue
            if len(parts) != len(names) + 1:
                raise ValueError(f"{path}:{lineno}: {len(parts) - 1} values for {len(names)} attributes")
            rows.append((parts[0], parts[1:]))
    if int(count_line) != len(rows):
        raise ValueError(f"{path}: header says {int(count_line)} images, the file lists {len(rows)}")
    return names, rows


def _read_official_partition(path: Path) -> dict[str, int]:
    out = {}
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'image_id partition', got {line.strip()[:60]!r}")
            out[parts[0]] = _split_id(parts[1], path)
    return out


def celeba_layout(root: str | Path) -> str:
    """``"official"`` (``list_attr_celeba.txt``) or ``"kaggle"`` (``list_attr_celeba.csv``) for a root
    folder; FileNotFoundError naming both files when neither is there."""
    root = Path(root).expanduser()
    if (root / "list_attr_celeba.csv").is_file():
        return "kaggle"
    if (root / "list_attr_celeba.txt").is_file():
        return "official"
    raise FileNotFoundError(
        f"CelebA attribute file not found: {root / 'list_attr_celeba.txt'} (official layout) or "
        f"{root / 'list_attr_celeba.csv'} (Kaggle layout)"
    )


def load_celeba(
    root: str | Path, target: str = "Blond_Hair", confounder: str = "Male", check_files: bool = True
):
    """CelebA from its official (``.txt``) or Kaggle (``.csv``) metadata + ``img_align_celeba/``; see the
    module docstring."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"CelebA root folder not found: {root}")
    layout = celeba_layout(root)
    if layout == "kaggle":
        attr_path = _require(root / "list_attr_celeba.csv", "CelebA attribute file")
        part_path = _require(root / "list_eval_partition.csv", "CelebA partition file")
        attrs = _read_csv(attr_path)
        _need_columns(attrs, ("image_id", target, confounder), attr_path)
        parts = _read_csv(part_path)
        _need_columns(parts, ("image_id", "partition"), part_path)
        split_of = {r["image_id"]: _split_id(r["partition"], part_path) for r in parts}
        table = [(r["image_id"], r[target], r[confounder]) for r in attrs]
    else:
        attr_path = _require(root / "list_attr_celeba.txt", "CelebA attribute file")
        part_path = _require(root / "list_eval_partition.txt", "CelebA partition file")
        names, rows = _read_official_attrs(attr_path)
        missing = [c for c in (target, confounder) if c not in names]
        if missing:
            raise KeyError(f"{attr_path} lacks attribute(s) {missing}; it has {names}")
        ti, ci = names.index(target), names.index(confounder)
        split_of = _read_official_partition(part_path)
        table = [(iid, vals[ti], vals[ci]) for iid, vals in rows]

    def pm1(v: str, col: str) -> int:
        if v.strip() not in ("1", "-1", "0"):
            raise ValueError(f"{attr_path}: attribute {col!r} must be -1/1 (or 0/1); got {v!r}")
        return int(int(v) > 0)

    img_dir = "img_align_celeba"
    if (root / img_dir / img_dir).is_dir():  # the Kaggle zip unpacks into img_align_celeba/img_align_celeba/
        img_dir = f"{img_dir}/{img_dir}"
    recs = []
    for iid, tv, cv in table:
        if iid not in split_of:
            raise KeyError(f"{part_path} has no partition for image {iid!r}")
        recs.append((f"{img_dir}/{iid}", split_of[iid], pm1(tv, target), pm1(cv, confounder)))
    return _build(root, recs, check_files, "CelebA")


def group_counts(split_ds, n_groups: int | None = None) -> torch.Tensor:
    """Examples per group of a split, read from its ``group`` column (no image is decoded)."""
    ds = getattr(split_ds, "ds", split_ds)
    if "group" not in getattr(ds, "column_names", ()):
        raise KeyError(f"dataset lacks a 'group' column; columns: {getattr(ds, 'column_names', None)}")
    g = torch.as_tensor(ds["group"], dtype=torch.long)
    n = int(n_groups) if n_groups is not None else (int(g.max()) + 1 if len(g) else 0)
    if len(g) and (int(g.min()) < 0 or int(g.max()) >= n):
        raise ValueError(f"group ids must be in [0, {n}), got values in [{int(g.min())}, {int(g.max())}]")
    return torch.bincount(g, minlength=n)[:n]


class ImageGroupDataset(torch.utils.data.Dataset):
    """A split of `load_waterbirds` / `load_celeba` as ``(x, y, group, index)`` with x a float CHW tensor.

    Images are resized to ``size`` x ``size`` (bilinear) and, if ``normalize``, standardised with the
    ImageNet mean/std (the official SiFer/group_DRO preprocessing without crops).
    """

    def __init__(self, split_ds, size: int = 224, normalize: bool = True):
        for col in ("image", "label", "group", "index"):
            if col not in split_ds.column_names:
                raise KeyError(f"dataset lacks column {col!r}; columns: {split_ds.column_names}")
        self.ds = split_ds
        self.size = int(size)
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.ds)

    @property
    def groups(self) -> torch.Tensor:
        """Group id of every item, from the metadata column (no image is decoded)."""
        return torch.as_tensor(self.ds["group"], dtype=torch.long)

    @property
    def labels(self) -> torch.Tensor:
        """Label of every item, from the metadata column (no image is decoded)."""
        return torch.as_tensor(self.ds["label"], dtype=torch.long)

    def __getitem__(self, i):
        row = self.ds[int(i)]
        img = row["image"].convert("RGB").resize((self.size, self.size))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        if self.normalize:
            x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        return x, torch.tensor(row["label"]), torch.tensor(row["group"]), torch.tensor(row["index"])
