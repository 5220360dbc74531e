"""Uncertainty, influence, CooP and expected information gain [DESIGN.md §1.3, §1.4].

CooP (the paper's policy) scores each unrevealed group k by

    S_k = alpha * U_k + beta * I_k - gamma * cost_k

U_k = sum_{j in G_k} H_b(p_j) (concept entropy; `group_reduce="mean"` averages instead), and
I_k = sum_v w_kv * |pi^{k,v}_yhat - pi_yhat|, the expected absolute change of the probability of
the *currently predicted* class yhat when group k is revealed as v, with weights p_hat for v=1 and
1 - p_hat for v=0 (official `label_confidence_change`; DESIGN.md pitfalls 2-3 fix Koh's swapped weights and
CEM's |E[d]|). alpha = 1 in the official code.
"""

from __future__ import annotations

import math

import torch

from ..candidates import CandidateSet, build_candidates, candidate_label_logits
from ..model import label_probs, predicted_class
from ..state import InteractionState
from .base import Policy

METRICS = ("confidence_change", "entropy_change", "kl", "sym_kl")
REDUCTIONS = ("expected_abs", "abs_expected", "expected")


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H_b(p) = -p ln p - (1-p) ln(1-p), in nats, with H_b(0) = H_b(1) = 0."""
    p = p.clamp(0.0, 1.0)
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))


def _entropy(pi: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(pi, pi).sum(-1)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q.clamp(min=1e-30))).sum(-1)


class Uncertainty(Policy):
    """U_k: summed (or mean) Bernoulli entropy of the group's concepts ("entropy"), or the negated
    summed confidence max(p, 1-p) ("confidence"). CooP with beta = 0."""

    name = "uncertainty"

    def __init__(self, measure: str = "entropy", group_reduce: str = "sum"):
        if measure not in ("entropy", "confidence"):
            raise ValueError(f"unknown uncertainty measure {measure!r}; choose 'entropy' or 'confidence'")
        if group_reduce not in ("sum", "mean"):
            raise ValueError(f"group_reduce must be 'sum' or 'mean', got {group_reduce!r}")
        self.measure, self.group_reduce = measure, group_reduce

    def _scores(self, state: InteractionState, **kw) -> torch.Tensor:
        p = state.concept_probs
        per = binary_entropy(p) if self.measure == "entropy" else -torch.maximum(p, 1 - p)
        member = state.groups.membership(p.device)  # (K, C)
        u = per @ member.T
        if self.group_reduce == "mean":
            u = u / member.sum(1)
        return u

    def __repr__(self) -> str:
        return f"Uncertainty(measure={self.measure!r}, group_reduce={self.group_reduce!r})"


class _CandidatePolicy(Policy):
    """Shared machinery: candidate sets per group convention, evaluated in one batched call."""

    def __init__(self, group_mode: str = "auto", use_linear: bool = True):
        self.group_mode = group_mode
        self.use_linear = use_linear
        self._cands: dict = {}

    def candidates(self, state: InteractionState) -> CandidateSet:
        key = id(state.groups)
        if key not in self._cands:
            self._cands[key] = (state.groups, build_candidates(state.groups, self.group_mode))
        return self._cands[key][1]

    def outcomes(self, state: InteractionState):
        """(cands, pi (B, n), pi_cand (B, Q, n), weights (B, Q)) for the current state."""
        cands = self.candidates(state)
        pi = label_probs(state.label_logits)
        pi_c = label_probs(candidate_label_logits(state.model, state.bottleneck, cands, self.use_linear))
        return cands, pi, pi_c, cands.weights(state.concept_probs).to(pi.dtype)

    @staticmethod
    def to_groups(per_family_or_cand: torch.Tensor, index: torch.Tensor, k: int) -> torch.Tensor:
        out = torch.zeros(
            per_family_or_cand.shape[0], k, device=per_family_or_cand.device, dtype=per_family_or_cand.dtype
        )
        return out.index_add_(1, index.to(out.device), per_family_or_cand)


class Influence(_CandidatePolicy):
    """I_k: expected change of the prediction when group k is revealed (CooP with alpha = 0).

    metric: "confidence_change" (|pi^v_yhat - pi_yhat|, official), "entropy_change"
    (H(pi) - H(pi^v), a reduction), "kl" (KL(pi^v || pi)), "sym_kl".
    reduction: "expected_abs" = E_v[|d|] (official), "abs_expected" = |E_v[d]| per outcome
    family (CEM's variant, DESIGN.md pitfall 3), "expected" = E_v[d] (signed).
    """

    name = "influence"

    def __init__(
        self,
        metric: str = "confidence_change",
        reduction: str = "expected_abs",
        group_mode: str = "auto",
        use_linear: bool = True,
    ):
        super().__init__(group_mode, use_linear)
        if metric not in METRICS:
            raise ValueError(f"unknown influence metric {metric!r}; choose one of {METRICS}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; choose one of {REDUCTIONS}")
        self.metric, self.reduction = metric, reduction

    def _scores(self, state: InteractionState, **kw) -> torch.Tensor:
        cands, pi, pi_c, w = self.outcomes(state)
        if self.metric == "confidence_change":
            yhat = predicted_class(state.label_logits)  # the *prediction*, never the true label
            p_now = pi.gather(1, yhat[:, None])  # (B, 1)
            d = pi_c.gather(2, yhat[:, None, None].expand(-1, pi_c.shape[1], 1))[..., 0] - p_now
        elif self.metric == "entropy_change":
            d = _entropy(pi)[:, None] - _entropy(pi_c)
        elif self.metric == "kl":
            d = _kl(pi_c, pi[:, None, :])
        else:
            d = _kl(pi_c, pi[:, None, :]) + _kl(pi[:, None, :].expand_as(pi_c), pi_c)
        k = len(state.groups)
        if self.reduction == "expected_abs":
            return self.to_groups(w * d.abs(), cands.group, k)
        if self.reduction == "expected":
            return self.to_groups(w * d, cands.group, k)
        per_family = self.to_groups(w * d, cands.family, cands.n_families).abs()
        return self.to_groups(per_family, cands.family_group, k)

    def __repr__(self) -> str:
        return (
            f"Influence(metric={self.metric!r}, reduction={self.reduction!r}, group_mode={self.group_mode!r})"
        )


class CooP(Policy):
    """Cooperative prediction: S_k = alpha * U_k + beta * I_k - gamma * cost_k [DESIGN.md §1.3].

    The defaults are DESIGN.md's resolution: concept entropy (summed) + label confidence change
    with E[|d|], beta = 10, gamma = 0 (tune them on validation with `icbm.tune_coop`).
    """

    name = "coop"

    def __init__(
        self,
        beta: float = 10.0,
        gamma: float = 0.0,
        alpha: float = 1.0,
        uncertainty: Uncertainty | None = None,
        influence: Influence | None = None,
    ):
        for nm, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if not math.isfinite(v):
                raise ValueError(f"{nm} must be finite, got {v}")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.uncertainty = uncertainty or Uncertainty()
        self.influence = influence or Influence()

    def components(self, state: InteractionState) -> dict[str, torch.Tensor]:
        """The three (B, K) terms U, I and cost, for explanations in the dialogue."""
        u = (
            self.uncertainty._scores(state)
            if self.alpha
            else torch.zeros_like(state.revealed_groups, dtype=torch.float32)
        )
        i = self.influence._scores(state) if self.beta else torch.zeros_like(u)
        return {"uncertainty": u, "influence": i, "cost": state.costs[None, :].expand_as(u)}

    def _scores(self, state: InteractionState, **kw) -> torch.Tensor:
        c = self.components(state)
        return self.alpha * c["uncertainty"] + self.beta * c["influence"] - self.gamma * c["cost"]

    def __repr__(self) -> str:
        return f"CooP(alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, {self.uncertainty!r}, {self.influence!r})"


Interactive = CooP


class ExpectedInformationGain(_CandidatePolicy):
    """EDDI-style mutual information I(Y; C_k | revealed) = sum_v p(v) KL(pi^{k,v} || pi_bar) with
    pi_bar = sum_v p(v) pi^{k,v}, p(v) from the encoder (no generative imputer needed) [DESIGN.md §1.4].
    For v2 groups the per-member informations are summed."""

    name = "eig"

    def _scores(self, state: InteractionState, **kw) -> torch.Tensor:
        cands, _pi, pi_c, w = self.outcomes(state)
        b, q, n = pi_c.shape
        f = cands.family.to(pi_c.device)
        mix = torch.zeros(b, cands.n_families, n, device=pi_c.device, dtype=pi_c.dtype)
        mix.index_add_(1, f, w[..., None] * pi_c)
        kl = _kl(pi_c, mix[:, f, :])  # (B, Q)
        per_family = self.to_groups(w * kl, f, cands.n_families)
        return self.to_groups(per_family, cands.family_group, len(state.groups))

    def __repr__(self) -> str:
        return f"ExpectedInformationGain(group_mode={self.group_mode!r})"
