"""The policy interface: `scores(state) -> (B, K)` and `select(state) -> (B,)`.

`scores` returns -inf for groups that are not available (already asked, or unaffordable under a
cost budget), so `select` never re-asks. `select` takes the argmax with a stable tie-break: the
lowest group index wins (torch.argmax returns the first maximum) [DESIGN.md pitfall 12]. A row with nothing
available selects -1. Policies that need ground truth (`requires_ground_truth = True`, the oracle)
receive it through the `truth=` keyword from the evaluator and are refused by the interactive dialogue.
"""

from __future__ import annotations

import torch

from ..state import InteractionState


class Policy:
    """Base class; subclasses implement `_scores(state) -> (B, K)` (higher = ask first)."""

    name = "policy"
    requires_ground_truth = False

    def _scores(self, state: InteractionState, **kw) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def scores(self, state: InteractionState, **kw) -> torch.Tensor:
        """(B, K) float scores, -inf where the group is not available."""
        s = self._scores(state, **kw).float()
        if s.shape != state.revealed_groups.shape:
            raise RuntimeError(f"{type(self).__name__} returned scores of shape {tuple(s.shape)}")
        return s.masked_fill(~state.available, float("-inf"))

    def select(self, state: InteractionState, **kw) -> torch.Tensor:
        """(B,) long: the next group per row, -1 where none is available."""
        s = self.scores(state, **kw)
        choice = s.argmax(dim=1)
        return torch.where(torch.isinf(s).all(dim=1) & (s < 0).all(dim=1), -1, choice)

    def reset(self) -> None:
        """Called by the evaluator before a run (stateless policies do nothing)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
