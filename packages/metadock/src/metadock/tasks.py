"""N-way K-shot task sampling over a class-labelled image dataset (no torchmeta: it pins torch<1.10)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Task:
    """One few-shot episode; labels are re-indexed 0..n_way-1 in the order of `classes`."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: tuple[int, ...]

    def to(self, device: torch.device | str) -> Task:
        """The same task with its tensors on `device` (self when they are there already)."""
        device = torch.device(device)
        if self.support_x.device == device and self.query_x.device == device:
            return self
        return Task(
            self.support_x.to(device),
            self.support_y.to(device),
            self.query_x.to(device),
            self.query_y.to(device),
            self.classes,
        )


class ClassPool:
    """Images grouped by class label, from a `datasets.Dataset` (columns image, label) or tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images.float()
        labels = torch.as_tensor(labels).long()
        self.classes = sorted(set(labels.tolist()))
        self.index = {c: torch.nonzero(labels == c).flatten() for c in self.classes}

    @classmethod
    def from_dataset(cls, ds) -> ClassPool:
        for col in ("image", "label"):
            if col not in ds.column_names:
                raise ValueError(f"dataset needs columns 'image' and 'label'; it has {ds.column_names}")
        rows = ds.with_format("torch")[:]
        return cls(rows["image"], rows["label"])


class TaskSampler:
    """Random tasks from a ClassPool, reproducible by seed."""

    def __init__(self, pool: ClassPool, n_way: int = 5, k_shot: int = 1, q_query: int = 15, seed: int = 0):
        if n_way > len(pool.classes):
            raise ValueError(f"n_way={n_way} but the split has only {len(pool.classes)} classes")
        short = [c for c in pool.classes if len(pool.index[c]) < k_shot + q_query]
        if short:
            raise ValueError(f"classes {short[:5]} have fewer than k_shot+q_query={k_shot + q_query} images")
        self.pool, self.n_way, self.k_shot, self.q_query = pool, n_way, k_shot, q_query
        self.rng = np.random.default_rng(seed)

    def sample(self) -> Task:
        classes = self.rng.choice(self.pool.classes, self.n_way, replace=False)
        sx, sy, qx, qy = [], [], [], []
        for i, c in enumerate(classes):
            idx = self.pool.index[int(c)]
            pick = idx[torch.as_tensor(self.rng.permutation(len(idx))[: self.k_shot + self.q_query])]
            imgs = self.pool.images[pick]
            sx.append(imgs[: self.k_shot])
            qx.append(imgs[self.k_shot :])
            sy += [i] * self.k_shot
            qy += [i] * self.q_query
        return Task(
            torch.cat(sx), torch.tensor(sy), torch.cat(qx), torch.tensor(qy), tuple(int(c) for c in classes)
        )

    def sample_batch(self, n: int) -> list[Task]:
        return [self.sample() for _ in range(n)]


def fixed_tasks(
    pool: ClassPool, n_tasks: int, n_way: int = 5, k_shot: int = 1, q_query: int = 15, seed: int = 123
) -> list[Task]:
    """A fixed list of tasks (the same for every method compared: paired evaluation)."""
    s = TaskSampler(pool, n_way, k_shot, q_query, seed)
    return [s.sample() for _ in range(n_tasks)]
