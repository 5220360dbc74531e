"""The concept bottleneck model (Koh et al. 2020) with the intervention operator of ICBM.

x --concept_encoder--> concept logits l (B, C) --phi--> bottleneck (B, C) --label_predictor--> label logits.

An intervention with mask m (1 = revealed by the human) and revealed values c replaces the
bottleneck by  b(m) = m * tau(c) + (1 - m) * phi(l)  [DESIGN.md §1.2], where phi is what the head sees
for unrevealed concepts (``bottleneck``) and tau maps an answer 0/1 to the value the head was
trained on (``intervention_format``): exactly 0/1 (``binary``), or per-concept 5th/95th
percentiles of phi(l) over the *training* split (``percentile``; DESIGN.md pitfall 1 resolve the official
code's global eval-split percentiles this way). The percentiles and an optional concept temperature
are buffers, so they travel with the state dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .groups import ConceptGroups

MODES = ("independent", "sequential", "joint")
BOTTLENECKS = ("probs", "logits", "hard")
FORMATS = ("auto", "binary", "percentile")


@dataclass
class ConceptOutput:
    concept_logits: torch.Tensor
    concept_probs: torch.Tensor
    label_logits: torch.Tensor


def label_probs(label_logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities: softmax, or [1 - s, s] for a binary task with one logit (DESIGN.md pitfall 16)."""
    if label_logits.shape[-1] == 1:
        p1 = torch.sigmoid(label_logits)
        return torch.cat([1 - p1, p1], dim=-1)
    return torch.softmax(label_logits, dim=-1)


def predicted_class(label_logits: torch.Tensor) -> torch.Tensor:
    """argmax of the class probabilities (first maximum on ties), shape (...,)."""
    if label_logits.shape[-1] == 1:
        return (label_logits[..., 0] > 0).long()
    return label_logits.argmax(dim=-1)


class ConceptBottleneckModel(nn.Module):
    q_low: torch.Tensor  # buffers (registered in __init__), declared for type checkers
    q_high: torch.Tensor
    temperature: torch.Tensor
    percentiles_fitted: torch.Tensor
    """A CBM = concept encoder + label predictor, with the ICBM intervention operator.

    Args:
        concept_encoder: any module mapping inputs (images, precomputed features, ...) to concept
            logits of shape (B, n_concepts); e.g. a timm backbone with a linear layer on top
            (see `timm_encoder`) or an `nn.Linear` on precomputed features.
        label_predictor: module mapping the bottleneck (B, n_concepts) to label logits (B, n_classes),
            or (B, 1) for a binary task.
        groups: the concept groups (kinds, costs).
        mode: how it is trained: "independent" (head on true concepts), "sequential" (head on
            predicted concepts), "joint" (end to end) [DESIGN.md §1.1].
        bottleneck: what the head sees for unrevealed concepts: "probs" (sigmoid), "logits", or
            "hard" (1[p > 0.5]).
        intervention_format: "binary", "percentile" or "auto" (binary for independent / hard
            models, percentile otherwise) [DESIGN.md pitfall 1].
    """

    def __init__(
        self,
        concept_encoder: nn.Module,
        label_predictor: nn.Module,
        groups: ConceptGroups,
        mode: str = "independent",
        bottleneck: str = "probs",
        intervention_format: str = "auto",
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        if bottleneck not in BOTTLENECKS:
            raise ValueError(f"unknown bottleneck {bottleneck!r}; choose one of {BOTTLENECKS}")
        if intervention_format not in FORMATS:
            raise ValueError(f"unknown intervention_format {intervention_format!r}; choose one of {FORMATS}")
        if mode == "independent" and bottleneck == "logits":
            raise ValueError(
                "an independent head is trained on 0/1 concepts, so it must see probabilities or hard "
                "concepts at test time (bottleneck='probs' or 'hard'), not logits"
            )
        if not isinstance(groups, ConceptGroups):
            raise TypeError(f"groups must be a ConceptGroups, got {type(groups).__name__}")
        if intervention_format == "auto":
            intervention_format = "binary" if mode == "independent" or bottleneck == "hard" else "percentile"
        self.concept_encoder = concept_encoder
        self.label_predictor = label_predictor
        self.groups = groups
        self.mode = mode
        self.bottleneck = bottleneck
        self.intervention_format = intervention_format
        c = groups.n_concepts
        self.register_buffer("q_low", torch.zeros(c))
        self.register_buffer("q_high", torch.ones(c))
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("percentiles_fitted", torch.zeros((), dtype=torch.bool))

    @property
    def n_concepts(self) -> int:
        return self.groups.n_concepts

    # ---- encoder side
    def check_concepts(self, t: torch.Tensor, what: str = "concept logits") -> torch.Tensor:
        """Raise a clear error when the last dimension is not n_concepts."""
        if t.dim() != 2 or t.shape[1] != self.n_concepts:
            raise ValueError(
                f"concept count mismatch: {what} have shape {tuple(t.shape)}, expected (batch, {self.n_concepts})"
            )
        return t

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Concept logits (B, C) for inputs x."""
        return self.check_concepts(self.concept_encoder(x), "the concept encoder's outputs")

    def concept_probs(self, concept_logits: torch.Tensor) -> torch.Tensor:
        """The policy's belief p_hat = sigmoid(l / T) (T = 1 unless `fit_temperature` was called)."""
        return torch.sigmoid(concept_logits / self.temperature)

    def phi(self, concept_logits: torch.Tensor) -> torch.Tensor:
        """What the head sees for an unrevealed concept."""
        if self.bottleneck == "probs":
            return torch.sigmoid(concept_logits)
        if self.bottleneck == "logits":
            return concept_logits
        hard = (concept_logits > 0).to(concept_logits.dtype)
        if self.training:  # straight-through estimator so joint training can pass gradients
            soft = torch.sigmoid(concept_logits)
            return hard + soft - soft.detach()
        return hard

    def tau(self, values: torch.Tensor) -> torch.Tensor:
        """What the head sees for a revealed concept with answer `values` (0/1) [DESIGN.md §1.2]."""
        if self.intervention_format == "binary":
            return values
        if not bool(self.percentiles_fitted):
            raise RuntimeError(
                "intervention_format='percentile' needs calibrate_percentiles(train concept logits) first"
            )
        return values * self.q_high + (1 - values) * self.q_low

    def tau_at(self, values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """tau for answers `values` of the concepts `idx` (same shape): the per-concept version of `tau`."""
        if self.intervention_format == "binary":
            return values
        if not bool(self.percentiles_fitted):
            raise RuntimeError(
                "intervention_format='percentile' needs calibrate_percentiles(train concept logits) first"
            )
        return values * self.q_high[idx] + (1 - values) * self.q_low[idx]

    def intervene(
        self,
        concept_logits: torch.Tensor,
        mask: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The intervened bottleneck b(m) = m * tau(c) + (1 - m) * phi(l)."""
        self.check_concepts(concept_logits)
        b = self.phi(concept_logits)
        if mask is None:
            return b
        if values is None:
            raise ValueError("intervene(mask=...) needs values for the revealed concepts")
        mask = mask.to(b.dtype)
        self.check_concepts(mask, "the intervention mask")
        self.check_concepts(values, "the revealed values")
        return mask * self.tau(values.to(b.dtype)) + (1 - mask) * b

    def head(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """Label logits (B, n_classes) from a bottleneck (B, C)."""
        out = self.label_predictor(bottleneck)
        if out.dim() == 1:
            out = out[:, None]
        return out

    def predict_label(
        self,
        concept_logits: torch.Tensor,
        mask: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Label logits after intervening with (mask, values); pure and batched."""
        return self.head(self.intervene(concept_logits, mask, values))

    def forward(self, x: torch.Tensor) -> ConceptOutput:
        logits = self.encode(x)
        return ConceptOutput(logits, self.concept_probs(logits), self.head(self.phi(logits)))

    # ---- calibration
    @torch.no_grad()
    def calibrate_percentiles(
        self, train_concept_logits: torch.Tensor, low: float = 0.05, high: float = 0.95
    ):
        """Store per-concept `low`/`high` quantiles of phi(l) on the training split [DESIGN.md pitfall 1]."""
        self.check_concepts(train_concept_logits, "calibration logits")
        b = self.phi(train_concept_logits.float())
        self.q_low.copy_(torch.quantile(b, low, dim=0))
        self.q_high.copy_(torch.quantile(b, high, dim=0))
        self.percentiles_fitted.fill_(True)
        return self

    def fit_temperature(self, concept_logits: torch.Tensor, concepts: torch.Tensor, steps: int = 200):
        """Fit one temperature T on held-out concepts (BCE), used only for the policy's p_hat [DESIGN.md pitfall 14]."""
        self.check_concepts(concept_logits)
        logits, target = concept_logits.detach().float(), concepts.detach().float()
        if target.shape != logits.shape:
            raise ValueError(
                f"concept count mismatch: concepts {tuple(target.shape)} vs logits {tuple(logits.shape)}"
            )
        # 1-D convex problem in log T: golden-section search (no optimizer import needed)
        lo, hi = -3.0, 3.0

        def nll(log_t: float) -> float:
            return float(
                nn.functional.binary_cross_entropy_with_logits(
                    logits / torch.exp(torch.tensor(log_t)), target
                )
            )

        g = (5**0.5 - 1) / 2
        for _ in range(steps):
            a, b = hi - g * (hi - lo), lo + g * (hi - lo)
            if nll(a) < nll(b):
                hi = b
            else:
                lo = a
            if hi - lo < 1e-6:
                break
        self.temperature.fill_(float(torch.exp(torch.tensor((lo + hi) / 2))))
        return self


def linear_cbm(
    in_features: int, groups: ConceptGroups, n_classes: int, hidden: int | None = None, **kwargs
) -> ConceptBottleneckModel:
    """A CBM on feature vectors: linear encoder, linear head (ICBM default) or an MLP head [DESIGN.md §1.1]."""
    c = groups.n_concepts
    if hidden:
        head: nn.Module = nn.Sequential(
            nn.Linear(c, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )
    else:
        head = nn.Linear(c, n_classes)
    return ConceptBottleneckModel(nn.Linear(in_features, c), head, groups, **kwargs)


def timm_encoder(name: str, n_concepts: int, pretrained: bool = False, **timm_kwargs) -> nn.Module:
    """A timm backbone (global-pooled features) followed by a linear layer to concept logits.

    ICBM uses InceptionV3 + GAP + Dense(n_concepts) [DESIGN.md §1.1]; ``pretrained=False`` by default
    because nothing is downloaded here.
    """
    import timm

    backbone = timm.create_model(name, pretrained=pretrained, num_classes=0, **timm_kwargs)
    return nn.Sequential(backbone, nn.Linear(cast(int, backbone.num_features), n_concepts))
