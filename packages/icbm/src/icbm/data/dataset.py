"""A small torch Dataset of (x, concepts, label[, visibility]) and helpers to read any such dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from ..groups import ConceptGroups


@dataclass
class ConceptDataset(Dataset):
    """In-memory concept data: x (N, ...), c (N, C) in {0,1}, y (N,) class ids, visible (N, C) bool.

    ``visible[i, j] = False`` means the human cannot tell concept j for instance i (CUB "not
    visible", CheXpert "uncertain"); a simulated human then answers "don't know" [DESIGN.md pitfall 7].
    """

    x: torch.Tensor
    c: torch.Tensor
    y: torch.Tensor
    visible: torch.Tensor | None = None  # None = all visible (a tensor after __post_init__)
    groups: ConceptGroups | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.x)
        if self.c.dim() != 2 or len(self.c) != n or len(self.y) != n:
            raise ValueError(
                f"x, c, y must share the first dimension and c must be (N, C): got "
                f"{tuple(self.x.shape)}, {tuple(self.c.shape)}, {tuple(self.y.shape)}"
            )
        if self.visible is None:
            self.visible = torch.ones_like(self.c, dtype=torch.bool)
        if self.visible.shape != self.c.shape:
            raise ValueError(
                f"visible must have the shape of c {tuple(self.c.shape)}, got {tuple(self.visible.shape)}"
            )
        if self.groups is not None and self.groups.n_concepts != self.c.shape[1]:
            raise ValueError(
                f"concept count mismatch: data have {self.c.shape[1]} concepts, groups cover {self.groups.n_concepts}"
            )

    @property
    def vis(self) -> torch.Tensor:
        """The visibility mask (always set after construction)."""
        assert self.visible is not None, "set in __post_init__"
        return self.visible

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.c[i], self.y[i], self.vis[i]

    def subset(self, idx) -> ConceptDataset:
        return ConceptDataset(self.x[idx], self.c[idx], self.y[idx], self.vis[idx], self.groups)


def collect(data, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, c, y, visible) tensors from a ConceptDataset, a tuple of tensors, or any Dataset of tuples."""
    if isinstance(data, ConceptDataset):
        return data.x, data.c.float(), data.y.long(), data.vis.bool()
    if isinstance(data, (tuple, list)) and len(data) in (3, 4) and all(torch.is_tensor(t) for t in data):
        ds = ConceptDataset(data[0], data[1], data[2], data[3] if len(data) == 4 else None)
        return ds.x, ds.c.float(), ds.y.long(), ds.vis.bool()
    if isinstance(data, Dataset):
        parts: list[list[torch.Tensor]] = []
        for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
            if len(batch) not in (3, 4):
                raise ValueError(f"a dataset item must be (x, c, y[, visible]); got {len(batch)} fields")
            if not parts:
                parts = [[] for _ in batch]
            for p, t in zip(parts, batch):
                p.append(t)
        if not parts:
            raise ValueError("empty dataset")
        tensors = [torch.cat(p) for p in parts]
        ds = ConceptDataset(tensors[0], tensors[1], tensors[2], tensors[3] if len(tensors) == 4 else None)
        return ds.x, ds.c.float(), ds.y.long(), ds.vis.bool()
    raise TypeError(
        f"expected a ConceptDataset, (x, c, y[, visible]) tensors or a Dataset; got {type(data).__name__}"
    )
