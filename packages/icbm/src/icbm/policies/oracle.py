"""The greedy oracle (instance_greedy; CEM's GreedyOptimal): an upper bound, not deployable.

Per instance it asks the group whose *true* answer maximises the probability of the *true*
label. It reads ground truth by design (`requires_ground_truth = True`), so the evaluator passes
`truth=(concepts, labels, visible)` and the interactive dialogue refuses it [DESIGN.md §1.4, pitfall 6].
"""

from __future__ import annotations

import torch

from ..model import label_probs
from ..state import InteractionState
from .base import Policy


class OracleGreedy(Policy):
    name = "oracle"
    requires_ground_truth = True

    def _scores(self, state: InteractionState, truth=None, **kw) -> torch.Tensor:
        if truth is None:
            raise ValueError(
                "OracleGreedy needs truth=(concepts, labels[, visible]); it is an upper bound only"
            )
        c, y = truth[0], truth[1]
        vis = truth[2] if len(truth) > 2 and truth[2] is not None else torch.ones_like(c, dtype=torch.bool)
        model = state.model
        member = state.groups.membership(c.device).bool()  # (K, C)
        b, k = state.revealed_groups.shape
        # every group's true reveal for every row, in one batched head call: (B, K, C) -> (B*K, C)
        over = member[None] & vis.bool()[:, None, :] & ~state.revealed_mask[:, None, :]
        cur = state.bottleneck[:, None, :]
        cand = torch.where(over, model.tau(c.float())[:, None, :], cur)
        pi = label_probs(model.head(cand.reshape(b * k, -1))).reshape(b, k, -1)
        return pi.gather(2, y.long()[:, None, None].expand(b, k, 1))[..., 0]
