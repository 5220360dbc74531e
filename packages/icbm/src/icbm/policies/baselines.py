"""Baselines that ignore the instance's uncertainty: random orders and static orders [DESIGN.md §1.4]."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..state import InteractionState
from .base import Policy


class Random(Policy):
    """Random group order, seeded.

    per_instance=True ("instance_random"): each instance gets its own random order. The order is a
    deterministic hash of (seed, the instance's concept logits, group), so it is the same whatever
    batch the instance is in (batch invariance) and fixed across steps (a random permutation).
    per_instance=False ("global_random"): one random order for the whole split.
    Average results over several seeds; never report the max (Koh's tti.py does) [DESIGN.md pitfall 9].
    """

    def __init__(self, seed: int = 0, per_instance: bool = True):
        self.seed = int(seed)
        self.per_instance = per_instance
        self.name = "random" if per_instance else "random-fixed"

    def _scores(self, state: InteractionState, **kw) -> torch.Tensor:
        b, k = state.revealed_groups.shape
        gen = torch.Generator().manual_seed(self.seed)
        if not self.per_instance:
            return torch.rand(k, generator=gen).to(state.concept_logits.device).expand(b, k)
        proj = torch.randn(state.concept_logits.shape[1], generator=gen, dtype=torch.float64)
        key = state.concept_logits.double().cpu() @ proj  # (B,) instance key
        phase = torch.rand(k, generator=gen, dtype=torch.float64) * 1000.0
        u = torch.frac(torch.sin(key[:, None] * 12.9898 + phase[None, :] * 78.233) * 43758.5453)
        return u.abs().float().to(state.concept_logits.device)

    def __repr__(self) -> str:
        return f"Random(seed={self.seed}, per_instance={self.per_instance})"


class StaticOrder(Policy):
    """A fixed group order (names or indices), the same for every instance."""

    name = "static"

    def __init__(self, order: Sequence[int | str]):
        self.order = list(order)
        if len(set(map(str, self.order))) != len(self.order):
            raise ValueError(f"static order has repeated groups: {self.order}")

    def _scores(self, state: InteractionState, **kw) -> torch.Tensor:
        groups = state.groups
        idx = [groups.index(o) if isinstance(o, str) else int(o) for o in self.order]
        if any(not 0 <= i < len(groups) for i in idx):
            raise ValueError(f"static order {self.order} has group indices outside [0, {len(groups)})")
        k = len(groups)
        s = torch.full((k,), -1e9)
        s[idx] = -torch.arange(len(idx), dtype=torch.float32)  # earlier = higher; unlisted groups last
        return s.to(state.concept_logits.device).expand(len(state), k)

    def __repr__(self) -> str:
        return f"StaticOrder({self.order})"


class StaticGreedy(StaticOrder):
    """Static order chosen greedily on a validation split with true concepts (global_greedy; Koh et al.).

    Step t adds the group whose true reveal (on top of the groups chosen so far, for every
    validation instance) maximises validation accuracy, ties broken by mean true-class log
    probability, then by lowest index. Fit on validation, never on test [DESIGN.md pitfall 10].
    """

    name = "static-greedy"

    @classmethod
    @torch.no_grad()
    def fit(cls, model, val_data, n_steps: int | None = None, progress: bool = False) -> StaticGreedy:
        from tqdm.auto import tqdm

        from ..data.dataset import collect
        from ..model import label_probs, predicted_class
        from ..training import predict_concept_logits

        x, c, y, vis = collect(val_data)
        logits = predict_concept_logits(model, (x, c, y, vis))
        groups = model.groups
        k = len(groups)
        n_steps = k if n_steps is None else min(int(n_steps), k)
        member = groups.membership().bool()
        mask = torch.zeros_like(c, dtype=torch.bool)
        order: list[int] = []
        for _ in tqdm(range(n_steps), desc="icbm: static greedy", disable=not progress, leave=False):
            best, best_key = None, None
            for g in range(k):
                if g in order:
                    continue
                m = mask | (member[g][None] & vis)
                lg = model.predict_label(logits, m, c)
                acc = float((predicted_class(lg) == y).float().mean())
                ll = float(label_probs(lg).gather(1, y[:, None]).clamp(min=1e-12).log().mean())
                key = (acc, ll)
                if best_key is None or key > best_key:
                    best, best_key = g, key
            if best is None:
                raise ValueError("StaticGreedy.fit: no group left to order")
            order.append(best)
            mask = mask | (member[best][None] & vis)
        return cls(order)
