"""A human-in-the-loop dialogue for one instance: ask, answer, predict [DESIGN.md §7].

    d = InteractiveDialogue(model, x, policy=CooP(beta=10), budget=5)
    q = d.next_query()              # Query(group, concepts, predicted_probs, score, breakdown)
    d.answer(q, [0, 1, 0])          # the human's 0/1 values for the group's concepts, or None = "don't know"
    d.prediction()                  # current class probabilities

Oracle policies read the true label and are refused here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .model import ConceptBottleneckModel, label_probs
from .policies.base import Policy
from .policies.scored import CooP
from .state import InteractionState


@dataclass
class Query:
    group: str
    index: int
    concepts: list[int]
    kind: str
    predicted_probs: list[float]
    score: float
    breakdown: dict = field(default_factory=dict)


class InteractiveDialogue:
    """One instance, one human. `x` is a single input (with or without batch dimension), or pass
    `concept_logits=` directly (shape (C,) or (1, C))."""

    def __init__(
        self,
        model: ConceptBottleneckModel,
        x: torch.Tensor | None = None,
        policy: Policy | None = None,
        budget: int | None = None,
        cost_budget: float | None = None,
        concept_logits: torch.Tensor | None = None,
    ):
        policy = policy or CooP()
        if policy.requires_ground_truth:
            raise ValueError(f"{type(policy).__name__} reads ground truth; it cannot drive a real dialogue")
        n_groups = len(model.groups)
        budget = n_groups if budget is None else budget
        if not isinstance(budget, int) or budget < 0:
            raise ValueError(f"budget must be a non-negative int, got {budget!r}")
        if budget > n_groups:
            raise ValueError(f"budget {budget} is larger than the number of concept groups ({n_groups})")
        model.eval()
        with torch.no_grad():
            if concept_logits is None:
                if x is None:
                    raise ValueError("give either x or concept_logits")
                concept_logits = model.encode(x if x.dim() > 1 and x.shape[0] == 1 else x[None])
            concept_logits = concept_logits.reshape(1, -1).float()
        self.model, self.policy, self.budget = model, policy, budget
        self.state = InteractionState.initial(model, concept_logits, cost_budget)
        self.history: list[tuple[Query | None, list[int] | None]] = []
        self._pending: Query | None = None

    @property
    def asked(self) -> int:
        return int(self.state.revealed_groups.sum())

    @property
    def done(self) -> bool:
        return self.asked >= self.budget or not bool(self.state.available.any())

    @torch.no_grad()
    def prediction(self) -> torch.Tensor:
        """Current class probabilities, shape (n_classes,)."""
        return label_probs(self.state.label_logits)[0]

    @torch.no_grad()
    def next_query(self) -> Query | None:
        """The policy's next question, or None when the budget is used up."""
        if self.done:
            return None
        s = self.policy.scores(self.state)
        k = int(s.argmax(1)[0])
        groups = self.model.groups
        breakdown = {}
        if isinstance(self.policy, CooP):
            breakdown = {n: float(v[0, k]) for n, v in self.policy.components(self.state).items()}
        mem = groups.members(k)
        q = Query(
            groups.names[k],
            k,
            mem,
            groups.kind(k),
            [float(p) for p in self.state.concept_probs[0, mem]],
            float(s[0, k]),
            breakdown,
        )
        self._pending = q
        return q

    @torch.no_grad()
    def answer(self, query: Query | str, values: Sequence[int] | Mapping | None) -> None:
        """Record the human's answer to `query` (a Query or a group name).

        values: 0/1 per member concept (a categorical group: exactly one 1), a {group: values}
        mapping, or None for "don't know" (the query is spent, the prediction is kept).
        """
        groups = self.model.groups
        name = query.group if isinstance(query, Query) else str(query)
        k = groups.index(name)  # raises for an unknown group
        if bool(self.state.revealed_groups[0, k]):
            raise ValueError(f"group {name!r} was already answered")
        if self.asked >= self.budget:
            raise ValueError(f"the budget of {self.budget} interaction(s) is used up")
        if not bool(self.state.available[0, k]):
            raise ValueError(f"group {name!r} is not affordable under the cost budget")
        if isinstance(values, Mapping):
            if set(values) != {name}:
                raise ValueError(f"answer mapping must have exactly the key {name!r}, got {list(values)}")
            values = values[name]
        answers = torch.zeros_like(self.state.concept_logits)
        known = torch.zeros_like(answers, dtype=torch.bool)
        mem = groups.members(k)
        if values is not None:
            v = torch.as_tensor(list(values), dtype=torch.float32)
            groups.validate_values(k, v)
            answers[0, mem] = v
            known[0, mem] = True
        self.state = self.state.reveal(torch.tensor([k]), answers, known)
        self.history.append(
            (query if isinstance(query, Query) else None, None if values is None else list(values))
        )
        self._pending = None
