"""Batch conventions: every loader the distiller reads yields the dataset index of each example.

Accepted batch layouts: a tuple/list ``(x, y, g, idx, ...)`` (the group_DRO convention used by
``paperworks_shared.spurious.to_torch`` and the shared real-benchmark loaders), a 3-tuple ``(x, y, idx)``
(no groups), or a mapping with keys ``x``, ``y``, ``idx`` and optionally ``g``. Weights are looked up by ``idx``, never by batch position
(notes §6.4), so shuffling, subsets and distributed samplers cannot misalign them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    g: torch.Tensor | None = None

    def to(self, device) -> Batch:
        return Batch(
            self.x.to(device),
            self.y.to(device),
            self.idx.to(device),
            None if self.g is None else self.g.to(device),
        )


def unpack_batch(batch) -> Batch:
    """Normalise a loader batch into a `Batch`; a clear error when the dataset index is missing."""
    if isinstance(batch, Batch):
        return batch
    if isinstance(batch, Mapping):
        missing = [k for k in ("x", "y", "idx") if k not in batch]
        if missing:
            raise ValueError(f"batch dict lacks keys {missing}; it needs x, y, idx (and optionally g)")
        return Batch(batch["x"], batch["y"], batch["idx"], batch.get("g"))
    if isinstance(batch, (tuple, list)) and len(batch) >= 4:
        return Batch(batch[0], batch[1], batch[3], batch[2])
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return Batch(batch[0], batch[1], batch[2], None)
    raise ValueError(
        "each batch must be (x, y, g, idx, ...), (x, y, idx) or a dict with x, y, idx: the distiller stores "
        "one weight "
        "per dataset index, so loaders must yield the index of every example "
        "(wrap your dataset in early_readout.IndexedDataset)"
    )


class IndexedDataset(Dataset):
    """Wrap a dataset of ``(x, y)`` or ``(x, y, g)`` items so that items become ``(x, y, idx)`` or
    ``(x, y, g, idx)`` (``idx`` = position in the wrapped dataset)."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        item = self.base[i]
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError("IndexedDataset expects base items (x, y) or (x, y, g)")
        if len(item) == 2:
            return item[0], item[1], i
        return item[0], item[1], item[2], i
