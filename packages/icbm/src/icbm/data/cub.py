"""Loader for the CUB-200-2011 concept layout from a local folder (never downloaded).

Reads the official release layout::

    root/images.txt                          "<image_id> <relative path>"
    root/image_class_labels.txt              "<image_id> <class 1..200>"
    root/train_test_split.txt                "<image_id> <1 = train, 0 = test>"
    root/attributes/image_attribute_labels.txt  "<image_id> <attr_id> <is_present> <certainty> ..."
    root/attributes.txt  (or root/attributes/attributes.txt, or root/../attributes.txt)  "<attr_id> <group>::<value>"
    root/images/<relative path>

Concept labels default to **class level**, as in Koh et al.'s `class_attr_data_10` pickles that
ICBM reads [DESIGN.md §1.2]: on the training split, per class and attribute, the majority vote of the
image labels (a 0 whose certainty is 1 = "not visible" is not counted; ties count as 1), and
only attributes that are 1 for at least `min_class_count` classes are kept (10 gives Koh's 112).
Class-level answers make interventions much stronger than instance-level ones [DESIGN.md pitfall 8], so
the choice is an explicit option. Groups are the attribute-name prefixes (28 groups for CUB);
a group is "multilabel" (several colours may apply). `visible` is False where the annotator said
"not visible" (certainty 1), which the simulated human answers with "don't know".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..groups import ConceptGroups
from .dataset import ConceptDataset


@dataclass
class CUBConcepts:
    root: Path
    image_paths: list[str]
    concepts: torch.Tensor  # (N, C) float 0/1
    labels: torch.Tensor  # (N,) 0-based class ids
    visible: torch.Tensor  # (N, C) bool
    is_train: torch.Tensor  # (N,) bool
    attribute_ids: list[int]  # the original 1-based attribute ids kept
    attribute_names: list[str]
    groups: ConceptGroups

    def split(self, train: bool) -> CUBConcepts:
        keep = self.is_train == train
        idx = torch.nonzero(keep)[:, 0]
        return CUBConcepts(
            self.root,
            [self.image_paths[i] for i in idx.tolist()],
            self.concepts[idx],
            self.labels[idx],
            self.visible[idx],
            self.is_train[idx],
            self.attribute_ids,
            self.attribute_names,
            self.groups,
        )

    def images(self, size: int = 64) -> CUBImages:
        """A torch Dataset yielding (image tensor (3, size, size), c, y, visible)."""
        return CUBImages(self, size)

    def with_features(self, features: torch.Tensor) -> ConceptDataset:
        """A ConceptDataset over precomputed per-image features (e.g. a frozen backbone's outputs)."""
        if len(features) != len(self.labels):
            raise ValueError(f"{len(features)} feature rows for {len(self.labels)} images")
        return ConceptDataset(features, self.concepts, self.labels, self.visible, self.groups)


class CUBImages(Dataset):
    def __init__(self, cub: CUBConcepts, size: int):
        self.cub, self.size = cub, size

    def __len__(self) -> int:
        return len(self.cub.labels)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.cub.root / "images" / self.cub.image_paths[i]) as im:
            arr = np.asarray(im.convert("RGB").resize((self.size, self.size)), dtype=np.float32) / 255.0
        x = torch.from_numpy(arr).permute(2, 0, 1)
        return x, self.cub.concepts[i], self.cub.labels[i], self.cub.visible[i]


def _read_pairs(path: Path) -> dict[int, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            a, b = line.strip().split(" ", 1)
            out[int(a)] = b.strip()
    return out


def _find_attributes_txt(root: Path) -> Path:
    for p in (
        root / "attributes.txt",
        root / "attributes" / "attributes.txt",
        root.parent / "attributes.txt",
    ):
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"attributes.txt not found under {root} (looked in root, root/attributes, root/..)"
    )


def load_cub(root: str | Path, class_level: bool = True, min_class_count: int = 10) -> CUBConcepts:
    """Load CUB concepts, labels, visibility and the train/test split from `root`."""
    root = Path(root)
    for f in (
        "images.txt",
        "image_class_labels.txt",
        "train_test_split.txt",
        "attributes/image_attribute_labels.txt",
    ):
        if not (root / f).is_file():
            raise FileNotFoundError(f"CUB layout: missing {root / f}")
    images = _read_pairs(root / "images.txt")
    classes = {k: int(v) - 1 for k, v in _read_pairs(root / "image_class_labels.txt").items()}
    train = {k: v.strip() == "1" for k, v in _read_pairs(root / "train_test_split.txt").items()}
    names = _read_pairs(_find_attributes_txt(root))
    ids = sorted(images)
    row = {img: i for i, img in enumerate(ids)}
    n, a = len(ids), max(names)
    present = np.zeros((n, a), dtype=np.int64)
    certainty = np.full((n, a), 4, dtype=np.int64)
    for line in (root / "attributes/image_attribute_labels.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        img, att, is_p, cert = (int(p) for p in parts[:4])
        if img in row:
            present[row[img], att - 1] = is_p
            certainty[row[img], att - 1] = cert
    y = np.array([classes[i] for i in ids])
    is_train = np.array([train[i] for i in ids])
    n_classes = int(y.max()) + 1
    invisible = certainty == 1
    # Koh et al. get_class_attributes_data: majority vote on train, ignoring invisible zeros, ties -> 1
    counts = np.zeros((n_classes, a, 2))
    tr = np.nonzero(is_train)[0]
    for i in tr:
        use = ~((present[i] == 0) & invisible[i])
        np.add.at(counts[y[i]], (np.nonzero(use)[0], present[i, use]), 1)
    class_label = (counts[:, :, 1] >= counts[:, :, 0]).astype(np.int64)
    keep = np.nonzero(class_label.sum(0) >= min_class_count)[0]
    if len(keep) == 0:
        raise ValueError(f"no attribute is present for >= {min_class_count} classes; lower min_class_count")
    concepts = class_label[y][:, keep] if class_level else present[:, keep]
    kept_names = [names[j + 1] for j in keep]
    group_map: dict[str, list[int]] = {}
    for ci, nm in enumerate(kept_names):
        group_map.setdefault(nm.split("::")[0], []).append(ci)
    groups = ConceptGroups(group_map, n_concepts=len(keep))
    return CUBConcepts(
        root=root,
        image_paths=[images[i] for i in ids],
        concepts=torch.tensor(concepts, dtype=torch.float32),
        labels=torch.tensor(y, dtype=torch.long),
        visible=torch.tensor(~invisible[:, keep]),
        is_train=torch.tensor(is_train),
        attribute_ids=[int(j) + 1 for j in keep],
        attribute_names=kept_names,
        groups=groups,
    )
