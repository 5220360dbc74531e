"""The interaction state handed to policies: model outputs and *revealed* answers only.

Deployable policies see an `InteractionState` and nothing else, so they cannot read unrevealed
ground-truth concepts, the label, or annotation-visibility flags (the official code leaks the
latter into its hypothetical interventions; DESIGN.md §2, quirk 3 and 6.6). `revealed_values` is zeroed
wherever `revealed_mask` is False when the state is built, so even a buggy caller cannot smuggle
ground truth in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .model import ConceptBottleneckModel


@dataclass
class InteractionState:
    """Batched state after t interactions.

    concept_logits: (B, C) encoder outputs, computed once per instance.
    revealed_mask: (B, C) bool, concepts whose answered value enters the bottleneck.
    revealed_values: (B, C) float, the answers (0 where not revealed).
    revealed_groups: (B, K) bool, groups already asked (also when the answer was "don't know").
    spent: (B,) cumulative acquisition cost.
    cost_budget: optional cap on cumulative cost; unaffordable groups are not available.
    """

    model: ConceptBottleneckModel
    concept_logits: torch.Tensor
    revealed_mask: torch.Tensor
    revealed_values: torch.Tensor
    revealed_groups: torch.Tensor
    spent: torch.Tensor
    cost_budget: float | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = self.model
        m.check_concepts(self.concept_logits)
        b, k = self.concept_logits.shape[0], len(m.groups)
        if self.revealed_mask.shape != self.concept_logits.shape:
            raise ValueError(f"revealed_mask must be {tuple(self.concept_logits.shape)}")
        if self.revealed_groups.shape != (b, k):
            raise ValueError(f"revealed_groups must be ({b}, {k}), got {tuple(self.revealed_groups.shape)}")
        self.revealed_mask = self.revealed_mask.bool()
        self.revealed_groups = self.revealed_groups.bool()
        self.revealed_values = torch.where(self.revealed_mask, self.revealed_values.float(), 0.0)

    @classmethod
    def initial(
        cls, model: ConceptBottleneckModel, concept_logits: torch.Tensor, cost_budget: float | None = None
    ):
        """Nothing revealed yet."""
        model.check_concepts(concept_logits)
        b, dev = concept_logits.shape[0], concept_logits.device
        return cls(
            model,
            concept_logits,
            torch.zeros_like(concept_logits, dtype=torch.bool),
            torch.zeros_like(concept_logits),
            torch.zeros(b, len(model.groups), dtype=torch.bool, device=dev),
            torch.zeros(b, device=dev),
            cost_budget,
        )

    # ---- derived quantities (cached; the state is treated as immutable)
    def __len__(self) -> int:
        return self.concept_logits.shape[0]

    @property
    def groups(self):
        return self.model.groups

    @property
    def concept_probs(self) -> torch.Tensor:
        """The model's belief p_hat (temperature-scaled when the model was calibrated)."""
        if "p" not in self._cache:
            self._cache["p"] = self.model.concept_probs(self.concept_logits)
        return self._cache["p"]

    @property
    def bottleneck(self) -> torch.Tensor:
        if "b" not in self._cache:
            self._cache["b"] = self.model.intervene(
                self.concept_logits, self.revealed_mask, self.revealed_values
            )
        return self._cache["b"]

    @property
    def label_logits(self) -> torch.Tensor:
        if "y" not in self._cache:
            self._cache["y"] = self.model.head(self.bottleneck)
        return self._cache["y"]

    @property
    def costs(self) -> torch.Tensor:
        return self.model.groups.cost_tensor(self.concept_logits.device)

    @property
    def available(self) -> torch.Tensor:
        """(B, K) bool: not asked yet and affordable under the cost budget (DESIGN.md pitfall 13)."""
        avail = ~self.revealed_groups
        if self.cost_budget is not None:
            avail = avail & (self.spent[:, None] + self.costs[None, :] <= self.cost_budget + 1e-9)
        return avail

    def rows(self, idx) -> InteractionState:
        """The sub-batch `idx` (for batch-invariance checks and chunking)."""
        return InteractionState(
            self.model,
            self.concept_logits[idx],
            self.revealed_mask[idx],
            self.revealed_values[idx],
            self.revealed_groups[idx],
            self.spent[idx],
            self.cost_budget,
        )

    def reveal(
        self, group: torch.Tensor, answers: torch.Tensor, known: torch.Tensor | None = None
    ) -> InteractionState:
        """A new state where row b has asked group[b] (-1 = nothing asked) and got `answers`.

        answers: (B, C) values; only the members of the asked group are read.
        known: (B, C) bool, False where the human said "don't know" (the group is spent but the
            model's prediction is kept for that concept, as in the official code).
        """
        group = group.long()
        if group.shape != (len(self),):
            raise ValueError(f"group must have shape ({len(self)},), got {tuple(group.shape)}")
        if ((group < -1) | (group >= len(self.groups))).any():
            raise ValueError(f"group indices must lie in [-1, {len(self.groups)})")
        asked = group >= 0
        if (self.revealed_groups[asked, group[asked]]).any():
            raise ValueError("a group was asked twice; policies must never re-ask a revealed group")
        member = self.model.groups.membership(self.concept_logits.device).bool()
        sel = torch.zeros_like(self.revealed_mask)
        sel[asked] = member[group[asked]]
        new_mask = sel if known is None else sel & known.bool()
        rg = self.revealed_groups.clone()
        rg[asked, group[asked]] = True
        spent = self.spent.clone()
        spent[asked] += self.costs[group[asked]]
        values = torch.where(new_mask, answers.float(), self.revealed_values)
        return InteractionState(
            self.model,
            self.concept_logits,
            self.revealed_mask | new_mask,
            values,
            rg,
            spent,
            self.cost_budget,
        )
