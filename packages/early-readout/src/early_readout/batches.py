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
import torch.utils.data
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


class TensorLoader:
    """A minimal, fast DataLoader for in-memory tensors: yields slices of a (re)shuffled order.

    ``torch.utils.data.DataLoader`` indexes and collates example by example, which dominates the cost of
    tiny models; this iterates whole slices. Shuffling draws from ``generator`` (or torch's global RNG,
    which checkpoints save and restore) once per epoch.
    """

    def __init__(self, tensors, batch_size: int = 64, shuffle: bool = False, generator=None):
        if isinstance(tensors, torch.utils.data.TensorDataset):
            tensors = tensors.tensors
        tensors = tuple(tensors)
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorLoader needs tensors of equal length")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return (len(self.tensors[0]) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for i in range(0, n, self.batch_size):
            if order is None:
                yield tuple(t[i : i + self.batch_size] for t in self.tensors)
            else:
                sel = order[i : i + self.batch_size]
                yield tuple(t[sel] for t in self.tensors)
