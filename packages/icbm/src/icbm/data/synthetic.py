"""The synthetic "occluded concepts" task of DESIGN.md §3.2, where interaction pays off.

Binary concepts c ~ Bernoulli(0.5) (a categorical group draws one member uniformly), label
y = argmax(c^T A + b) with A ~ N(0, 2^2) and the rows of `n_irrelevant` groups zeroed, features
x = concat_j [ v_ij * (2 c_j - 1) * w_j ] + noise * eps with w_j ~ N(0, I_d) and a visibility
flag v_ij ~ Bernoulli(1 - p_occlude) per instance and group ("instance-specific occlusion").
The encoder cannot see occluded concepts, so which concept to ask differs per instance: exactly
the situation in which a dynamic policy (CooP) beats a static order.

``occlusion="fixed"`` makes occlusion a property of the concept (every third group always
occluded, DESIGN.md §3.3 E3), where a static order can learn what to ask. The human always knows the true
concept (occlusion hides it from the *image* only), so ``visible`` is all True and the occlusion
mask is kept in ``dataset.meta["occluded"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..groups import ConceptGroups
from .dataset import ConceptDataset


@dataclass
class OccludedConceptsTask:
    """One fixed task (A, b, w, irrelevant groups) from which splits are sampled."""

    n_concepts: int = 16
    n_classes: int = 6
    p_occlude: float = 0.35
    n_irrelevant: int = 6
    dims_per_concept: int = 4
    noise: float = 0.6
    group_spec: Sequence[tuple[str, int]] = None  # type: ignore[assignment]  # None = singletons; set in __post_init__
    occlusion: str = "instance"
    costs: Sequence[float] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.group_spec is None:
            self.group_spec = [("binary", 1)] * self.n_concepts
        self.groups = ConceptGroups.from_spec(self.group_spec, costs=self.costs)
        self.n_concepts = self.groups.n_concepts
        k = len(self.groups)
        if not 0 <= self.n_irrelevant < k:
            raise ValueError(f"n_irrelevant must be in [0, {k}), got {self.n_irrelevant}")
        if not 0 <= self.p_occlude <= 1:
            raise ValueError(f"p_occlude must be in [0, 1], got {self.p_occlude}")
        if self.occlusion not in ("instance", "fixed"):
            raise ValueError(f"occlusion must be 'instance' or 'fixed', got {self.occlusion!r}")
        rng = np.random.default_rng([self.seed, 7919])
        self.A = rng.normal(0, 2.0, size=(self.n_concepts, self.n_classes))
        self.b = rng.normal(0, 1.0, size=self.n_classes)
        self.irrelevant = np.sort(rng.choice(k, size=self.n_irrelevant, replace=False))
        for g in self.irrelevant:
            self.A[self.groups.members(int(g))] = 0.0
        self.W = rng.normal(0, 1.0, size=(self.n_concepts, self.dims_per_concept))

    @property
    def in_features(self) -> int:
        return self.n_concepts * self.dims_per_concept

    def sample(self, n: int, seed: int) -> ConceptDataset:
        """`n` instances drawn with `seed` (independent of the task seed)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        rng = np.random.default_rng([self.seed, seed, 104729])
        c = np.zeros((n, self.n_concepts))
        occ_group = np.zeros((n, len(self.groups)), dtype=bool)
        for k, (kind, _size) in enumerate(self.group_spec):
            idx = self.groups.members(k)
            if kind == "categorical":
                c[np.arange(n), np.asarray(idx)[rng.integers(0, len(idx), size=n)]] = 1.0
            else:
                c[:, idx] = rng.random((n, len(idx))) < 0.5
            if self.occlusion == "instance":
                occ_group[:, k] = rng.random(n) < self.p_occlude
            else:
                occ_group[:, k] = k % 3 == 0
        y = np.argmax(c @ self.A + self.b, axis=1)
        occluded = occ_group @ self.groups.membership().numpy().astype(bool)
        signed = (1.0 - occluded) * (2 * c - 1)  # (n, C)
        x = (signed[:, :, None] * self.W[None]).reshape(n, -1)
        x = x + self.noise * rng.normal(size=x.shape)
        return ConceptDataset(
            torch.tensor(x, dtype=torch.float32),
            torch.tensor(c, dtype=torch.float32),
            torch.tensor(y, dtype=torch.long),
            None,
            self.groups,
            meta={"occluded": torch.tensor(occluded)},
        )

    def splits(self, n_train: int = 4000, n_val: int = 1000, n_test: int = 2000, seed: int = 0):
        """(train, val, test) ConceptDatasets from disjoint sample seeds."""
        return (
            self.sample(n_train, 3 * seed),
            self.sample(n_val, 3 * seed + 1),
            self.sample(n_test, 3 * seed + 2),
        )


def make_occluded_concepts(n: int, seed: int = 0, **task_kwargs) -> ConceptDataset:
    """Shortcut: `n` instances of `OccludedConceptsTask(seed=seed, **task_kwargs)`."""
    return OccludedConceptsTask(seed=seed, **task_kwargs).sample(n, seed)


def categorical_task(seed: int = 0, **kwargs) -> OccludedConceptsTask:
    """The notes' E2 task: 8 one-hot groups of 4 values (32 concepts), 3 irrelevant groups."""
    kw: dict[str, Any] = dict(group_spec=[("categorical", 4)] * 8, n_irrelevant=3, seed=seed)
    kw.update(kwargs)
    return OccludedConceptsTask(**kw)
