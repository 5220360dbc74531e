"""Concept groups: which binary concepts a human answers together, of what kind, at what cost.

The interaction unit of the paper is a concept *group* (CUB: 28 attribute groups over 112 binary
concepts; OAI: 10 one-hot grade groups) [DESIGN.md §1.3]. Every concept belongs to exactly one group.

Kinds:
- ``binary``: one binary concept (a singleton group);
- ``multilabel``: several binary concepts, any subset may be 1 (e.g. several wing colours);
- ``categorical``: a one-hot group, exactly one member is 1 (e.g. a KL grade).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

KINDS = ("binary", "multilabel", "categorical")


@dataclass(frozen=True)
class ConceptGroups:
    """An ordered partition of ``n_concepts`` binary concepts into named groups with kinds and costs.

    Args:
        groups: name -> concept indices (ordered; the order is the group index used everywhere,
            and the tie-break of every policy is "lowest group index first" [DESIGN.md pitfall 12]).
        kinds: name -> "binary" | "multilabel" | "categorical"; default "binary" for singletons
            and "multilabel" for larger groups.
        costs: name -> positive acquisition cost; default 1.0.
        n_concepts: total number of concepts; default max index + 1. Every concept must be in
            exactly one group.
    """

    groups: Mapping[str, Sequence[int]]
    kinds: Mapping[str, str] = field(default_factory=dict)
    costs: Mapping[str, float] = field(default_factory=dict)
    n_concepts: int = None  # type: ignore[assignment]  # None = max index + 1; an int after __post_init__

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("ConceptGroups needs at least one group")
        groups = {str(k): [int(i) for i in v] for k, v in self.groups.items()}
        for name, idx in groups.items():
            if not idx:
                raise ValueError(f"group {name!r} has no concepts")
        for where, mapping in (("kinds", self.kinds), ("costs", self.costs)):
            unknown = sorted(set(mapping) - set(groups))
            if unknown:
                raise ValueError(f"unknown group(s) {unknown} in {where}; known groups: {list(groups)}")
        flat = [i for idx in groups.values() for i in idx]
        n = self.n_concepts if self.n_concepts is not None else max(flat) + 1
        if min(flat) < 0 or max(flat) >= n:
            raise ValueError(f"concept indices must lie in [0, {n}); got range [{min(flat)}, {max(flat)}]")
        if len(flat) != len(set(flat)):
            dup = sorted({i for i in flat if flat.count(i) > 1})
            raise ValueError(f"concept(s) {dup} belong to more than one group")
        if len(flat) != n:
            missing = sorted(set(range(n)) - set(flat))
            raise ValueError(f"concept(s) {missing} belong to no group (n_concepts={n})")
        kinds = {}
        for name, idx in groups.items():
            kind = self.kinds.get(name, "binary" if len(idx) == 1 else "multilabel")
            if kind not in KINDS:
                raise ValueError(f"group {name!r}: unknown kind {kind!r}; choose one of {KINDS}")
            if kind == "binary" and len(idx) != 1:
                raise ValueError(f"group {name!r} is 'binary' but has {len(idx)} concepts; use 'multilabel'")
            if kind == "categorical" and len(idx) < 2:
                raise ValueError(f"categorical group {name!r} needs at least 2 concepts")
            kinds[name] = kind
        costs = {}
        for name in groups:
            cost = float(self.costs.get(name, 1.0))
            if not cost > 0:
                raise ValueError(f"group {name!r}: cost must be > 0, got {cost}")
            costs[name] = cost
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "costs", costs)
        object.__setattr__(self, "n_concepts", n)

    # ---- constructors
    @classmethod
    def singletons(cls, n_concepts: int, names: Sequence[str] | None = None, costs=None) -> ConceptGroups:
        """One binary group per concept (CheXpert-style)."""
        names = list(names) if names is not None else [f"c{j}" for j in range(n_concepts)]
        if len(names) != n_concepts:
            raise ValueError(f"{len(names)} names for {n_concepts} concepts")
        cost_map = dict(zip(names, costs)) if costs is not None else {}
        return cls({n: [j] for j, n in enumerate(names)}, costs=cost_map, n_concepts=n_concepts)

    @classmethod
    def from_spec(
        cls, spec: Sequence[tuple[str, int]], costs: Sequence[float] | None = None
    ) -> ConceptGroups:
        """Consecutive groups from ``[(kind, size), ...]``, named g0, g1, ..."""
        groups, kinds, start = {}, {}, 0
        for k, (kind, size) in enumerate(spec):
            groups[f"g{k}"] = list(range(start, start + int(size)))
            kinds[f"g{k}"] = kind
            start += int(size)
        cost_map = {f"g{k}": float(c) for k, c in enumerate(costs)} if costs is not None else {}
        return cls(groups, kinds=kinds, costs=cost_map, n_concepts=start)

    # ---- views
    @property
    def names(self) -> list[str]:
        return list(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def index(self, name: str) -> int:
        """Group index of ``name``; raises a clear error for an unknown group."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown group {name!r}; known groups: {self.names}") from None

    def members(self, k: int | str) -> list[int]:
        name = k if isinstance(k, str) else self.names[k]
        if name not in self.groups:
            raise KeyError(f"unknown group {name!r}; known groups: {self.names}")
        return list(self.groups[name])

    def kind(self, k: int | str) -> str:
        return self.kinds[k if isinstance(k, str) else self.names[k]]

    def cost_tensor(self, device=None) -> torch.Tensor:
        """(K,) float tensor of group costs."""
        return torch.tensor([self.costs[n] for n in self.names], dtype=torch.float32, device=device)

    def membership(self, device=None) -> torch.Tensor:
        """(K, C) 0/1 float matrix: entry (k, j) = 1 when concept j is in group k."""
        m = torch.zeros(len(self), self.n_concepts, device=device)
        for k, idx in enumerate(self.groups.values()):
            m[k, idx] = 1.0
        return m

    def to_dict(self) -> dict:
        return {"groups": dict(self.groups), "kinds": dict(self.kinds), "costs": dict(self.costs)}

    @classmethod
    def from_dict(cls, d: Mapping) -> ConceptGroups:
        return cls(d["groups"], kinds=d.get("kinds", {}), costs=d.get("costs", {}))

    def validate_values(self, k: int, values: torch.Tensor) -> None:
        """Raise when ``values`` (the answer for group k, shape (|G_k|,)) is not a legal value of its kind."""
        name = self.names[k]
        size = len(self.groups[name])
        if values.shape != (size,):
            raise ValueError(f"group {name!r} expects {size} value(s), got shape {tuple(values.shape)}")
        if not torch.all((values == 0) | (values == 1)):
            raise ValueError(f"group {name!r}: answers must be 0 or 1, got {values.tolist()}")
        if self.kinds[name] == "categorical" and int(values.sum()) != 1:
            raise ValueError(
                f"categorical group {name!r}: exactly one member must be 1, got {values.tolist()}"
            )
