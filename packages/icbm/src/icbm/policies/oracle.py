"""The greedy oracle (instance_greedy; CEM's GreedyOptimal): an upper bound, not deployable.

Per instance it asks the group whose *true* answer maximises the probability of the *true*
label. It reads ground truth by design (`requires_ground_truth = True`), so the evaluator passes
`truth=(concepts, labels, visible)` and the interactive dialogue refuses it [notes 1.4, 6.6].
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
        member = state.groups.membership(c.device).bool()  # (K, C)
        out = []
        for k in range(len(state.groups)):
            m = state.revealed_mask | (member[k][None] & vis.bool())
            v = torch.where(m, c.float(), state.revealed_values)
            pi = label_probs(state.model.predict_label(state.concept_logits, m, v))
            out.append(pi.gather(1, y.long()[:, None])[:, 0])
        return torch.stack(out, dim=1)
