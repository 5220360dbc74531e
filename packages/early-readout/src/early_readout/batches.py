"""Batch conventions: every loader the distiller reads yields the dataset index of each example.

The layout of a tuple/list batch is never guessed from its length: it is declared by a **batch
schema**, a sequence of field names drawn from ``x``, ``y``, ``g`` (group), ``idx`` (dataset index) and
``_`` (a field to ignore). The default, ``("x", "y", "g", "idx")``, is the group_DRO convention used by
``paperworks_shared.spurious.to_torch`` and the shared real-benchmark loaders; a loader without groups
needs ``batch_schema=("x", "y", "idx")``. A batch whose length differs from the schema's is an error
(a ``(x, y, group)`` loader is no longer read as ``(x, y, idx)``), and so is an index column that cannot
be one (not integer, not one value per example, repeated inside the batch). A mapping with keys
``x``, ``y``, ``idx`` (and optionally ``g``) names its own fields. Weights are looked up by ``idx``,
never by batch position (DESIGN.md §6.4), so shuffling, subsets and distributed samplers cannot misalign them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.utils.data
from torch.utils.data import Dataset

DEFAULT_SCHEMA = ("x", "y", "g", "idx")
_FIELDS = ("x", "y", "g", "idx", "_")


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


def check_schema(schema) -> tuple[str, ...]:
    """Validate a batch schema (see the module docstring) and return it as a tuple of names."""
    if isinstance(schema, str):
        schema = tuple(s.strip() for s in schema.split(","))
    try:
        schema = tuple(schema)
    except TypeError:
        raise TypeError(f"batch_schema must be a sequence of field names, got {schema!r}") from None
    bad = [f for f in schema if f not in _FIELDS]
    if bad:
        raise ValueError(f"batch_schema has unknown field(s) {bad}; fields are {_FIELDS} ('_' = ignore)")
    for f in ("x", "y", "idx"):
        if schema.count(f) != 1:
            raise ValueError(f"batch_schema {schema} must name {f!r} exactly once (it needs x, y and idx)")
    if schema.count("g") > 1:
        raise ValueError(f"batch_schema {schema} names 'g' more than once")
    return schema


def _check_batch(b: Batch, schema) -> Batch:
    where = f"batch_schema {tuple(schema)}" if schema is not None else "the batch dict"
    n = len(b.y) if isinstance(b.y, torch.Tensor) and b.y.dim() > 0 else None
    idx = torch.as_tensor(b.idx)
    if (
        idx.is_floating_point()
        or idx.dtype == torch.bool
        or idx.dim() != 1
        or (n is not None and len(idx) != n)
    ):
        raise ValueError(
            f"the field read as the dataset index (per {where}) is not one integer per example "
            f"(dtype {idx.dtype}, shape {tuple(idx.shape)}, labels {n}): the loader's layout does not match "
            "the batch schema"
        )
    if len(idx) > 1 and len(torch.unique(idx)) != len(idx):
        raise ValueError(
            f"the field read as the dataset index (per {where}) repeats values inside one batch "
            f"(e.g. {idx[:8].tolist()}): it looks like a group or label column, not dataset indices. "
            "Declare the loader's layout with batch_schema=..., e.g. ('x', 'y', 'idx') or ('x', 'y', 'g', 'idx'), "
            "or wrap the dataset in early_readout.IndexedDataset"
        )
    if b.g is not None:
        g = torch.as_tensor(b.g)
        if g.is_floating_point() or g.dim() != 1 or (n is not None and len(g) != n):
            raise ValueError(
                f"the field read as the group id (per {where}) is not one integer per example "
                f"(dtype {g.dtype}, shape {tuple(g.shape)}): the loader's layout does not match the batch schema"
            )
    return Batch(b.x, b.y, idx, b.g)


def unpack_batch(batch, schema: Sequence[str] | None = DEFAULT_SCHEMA) -> Batch:
    """Read a loader batch through the declared ``schema``; a clear error on any mismatch."""
    if isinstance(batch, Batch):
        return batch
    if isinstance(batch, Mapping):
        missing = [k for k in ("x", "y", "idx") if k not in batch]
        if missing:
            raise ValueError(f"batch dict lacks keys {missing}; it needs x, y, idx (and optionally g)")
        return _check_batch(Batch(batch["x"], batch["y"], batch["idx"], batch.get("g")), None)
    schema = check_schema(DEFAULT_SCHEMA if schema is None else schema)
    if not isinstance(batch, (tuple, list)):
        raise ValueError(
            f"each batch must be a tuple/list laid out as batch_schema {schema} or a dict with x, y, idx; "
            f"got {type(batch).__name__}"
        )
    if len(batch) != len(schema):
        hint = (
            " A 3-field batch is ambiguous ((x, y, idx) or (x, y, group)): declare it, e.g. "
            "batch_schema=('x', 'y', 'idx'), or wrap the dataset in early_readout.IndexedDataset."
            if len(batch) == 3
            else ""
        )
        raise ValueError(
            f"the batch has {len(batch)} fields but batch_schema {schema} has {len(schema)}: the loader's "
            f"layout does not match the declared schema (the distiller stores one weight per dataset index, "
            f"so loaders must yield the index of every example).{hint}"
        )
    f = dict(zip(schema, batch))
    return _check_batch(Batch(f["x"], f["y"], f["idx"], f.get("g")), schema)


class IndexedDataset(Dataset):
    """Wrap a dataset of ``(x, y)`` or ``(x, y, g)`` items so that items become ``(x, y, g, idx)``, the
    default batch schema (``idx`` = position in the wrapped dataset; ``g = -1`` when the base has no groups)."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]  # torch's Dataset has no __len__ in its stub; ours are sized

    def __getitem__(self, i: int):
        item = self.base[i]
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError("IndexedDataset expects base items (x, y) or (x, y, g)")
        if len(item) == 2:
            return item[0], item[1], -1, i
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
