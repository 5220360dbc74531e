"""Hypothetical reveals: every (group, value) candidate of every row, scored in one batched call.

For each group k not yet revealed, CooP-style policies ask "what would the head predict if the
human answered v for group k?" [DESIGN.md §1.3]. The candidate set per group depends on the group
convention [DESIGN.md §1.3, pitfall 4]:

- ``v1`` (official default): set *all* members to 0 or to 1; weights 1 - w, w with w = mean p_hat.
- ``v2`` (official *_v2): reveal each member alone as 0 or 1, weights 1 - p_j, p_j; summed over j.
- ``categorical`` (proposed for one-hot groups): the |G| one-hot configurations, weights p_j / sum p.
- ``auto``: categorical for categorical groups, v2 for multilabel groups, v1 (= v2) for singletons.

Each candidate belongs to a *family* (one outcome distribution: the group for v1/categorical,
the member for v2), used by the weight normalisation and the information-gain policy.

Evaluation is vectorised [DESIGN.md §5]: a general head sees cur (B, 1, C) with the candidate's
concepts overridden -> one head call on (B * Q, C), chunked over B; a linear head uses the low-rank
update  logits + sum_m (tau(v_m) - cur_m) W[:, m],  which costs O(B Q |G| n_classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .groups import ConceptGroups

GROUP_MODES = ("auto", "v1", "v2", "categorical")


@dataclass
class CandidateSet:
    group: torch.Tensor  # (Q,) group index of each candidate
    family: torch.Tensor  # (Q,) outcome-distribution id
    family_group: torch.Tensor  # (F,) group of each family
    idx: torch.Tensor  # (Q, M) overridden concept indices (padded)
    valid: torch.Tensor  # (Q, M) bool, real entries of idx
    values: torch.Tensor  # (Q, M) 0/1 answer of each overridden concept
    w_a: torch.Tensor  # (Q,) weight = w_a + w_s * mean_{m valid} p_hat[idx_w]  (then normalised per family)
    w_s: torch.Tensor
    w_idx: torch.Tensor  # (Q, M)
    w_valid: torch.Tensor  # (Q, M)

    @property
    def n_families(self) -> int:
        return len(self.family_group)

    def to(self, device) -> CandidateSet:
        return CandidateSet(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def dense(self, n_concepts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, C) override mask and (Q, C) 0/1 values."""
        q = len(self.group)
        o = torch.zeros(q, n_concepts, device=self.idx.device)
        v = torch.zeros(q, n_concepts, device=self.idx.device)
        rows = torch.arange(q, device=self.idx.device)[:, None].expand_as(self.idx)
        o[rows[self.valid], self.idx[self.valid]] = 1.0
        v[rows[self.valid], self.idx[self.valid]] = self.values[self.valid]
        return o, v

    def weights(self, p_hat: torch.Tensor) -> torch.Tensor:
        """(B, Q) expectation weights from the model's belief p_hat (never from ground truth)."""
        pw = p_hat[:, self.w_idx] * self.w_valid  # (B, Q, M)
        mean = pw.sum(-1) / self.w_valid.sum(-1).clamp(min=1)
        raw = self.w_a + self.w_s * mean
        fam_sum = torch.zeros(p_hat.shape[0], self.n_families, device=p_hat.device, dtype=raw.dtype)
        fam_sum.index_add_(1, self.family, raw)
        return raw / fam_sum[:, self.family].clamp(min=1e-12)


def group_convention(groups: ConceptGroups, k: int, mode: str) -> str:
    if mode not in GROUP_MODES:
        raise ValueError(f"unknown group_mode {mode!r}; choose one of {GROUP_MODES}")
    kind = groups.kind(k)
    if mode == "auto":
        return {"categorical": "categorical", "multilabel": "v2", "binary": "v1"}[kind]
    if mode == "categorical" and kind == "multilabel":
        raise ValueError(
            f"group {groups.names[k]!r} is multilabel; group_mode='categorical' needs one-hot groups"
        )
    if mode == "categorical" and kind == "binary":
        return "v1"
    return mode


def build_candidates(groups: ConceptGroups, mode: str = "auto") -> CandidateSet:
    """Enumerate the candidates of every group under convention `mode`."""
    m_max = max(len(v) for v in groups.groups.values())
    rows = []  # (group, family, idx, values, w_a, w_s, w_idx)
    fam_group: list[int] = []
    for k in range(len(groups)):
        mem = groups.members(k)
        conv = group_convention(groups, k, mode)
        if conv == "v1":
            f = len(fam_group)
            fam_group.append(k)
            rows.append((k, f, mem, [0.0] * len(mem), 1.0, -1.0, mem))
            rows.append((k, f, mem, [1.0] * len(mem), 0.0, 1.0, mem))
        elif conv == "v2":
            for j in mem:
                f = len(fam_group)
                fam_group.append(k)
                rows.append((k, f, [j], [0.0], 1.0, -1.0, [j]))
                rows.append((k, f, [j], [1.0], 0.0, 1.0, [j]))
        else:  # categorical: one-hot configurations
            f = len(fam_group)
            fam_group.append(k)
            for j in mem:
                rows.append((k, f, mem, [1.0 if i == j else 0.0 for i in mem], 0.0, 1.0, [j]))

    def pad(lst, fill):
        return lst + [fill] * (m_max - len(lst))

    return CandidateSet(
        group=torch.tensor([r[0] for r in rows]),
        family=torch.tensor([r[1] for r in rows]),
        family_group=torch.tensor(fam_group),
        idx=torch.tensor([pad(r[2], 0) for r in rows]),
        valid=torch.tensor([pad([True] * len(r[2]), False) for r in rows]),
        values=torch.tensor([pad(r[3], 0.0) for r in rows]),
        w_a=torch.tensor([r[4] for r in rows]),
        w_s=torch.tensor([r[5] for r in rows]),
        w_idx=torch.tensor([pad(r[6], 0) for r in rows]),
        w_valid=torch.tensor([pad([True] * len(r[6]), False) for r in rows]),
    )


def _linear_head(model) -> nn.Linear | None:
    head = model.label_predictor
    return head if isinstance(head, nn.Linear) else None


def candidate_label_logits(
    model, bottleneck: torch.Tensor, cands: CandidateSet, use_linear: bool = True, max_elems: int = 2**23
) -> torch.Tensor:
    """(B, Q, n_classes) label logits with each candidate applied to the current bottleneck."""
    cands = cands.to(bottleneck.device)
    # tau of the candidate answers, per overridden concept (per-concept percentiles or 0/1)
    tv = model.tau_at(cands.values, cands.idx) if hasattr(model, "tau_at") else cands.values
    lin = _linear_head(model) if use_linear else None
    b, c = bottleneck.shape
    q = len(cands.group)
    if lin is not None:
        base = model.head(bottleneck)  # (B, n)
        w = lin.weight  # (n, C)
        wsel = w[:, cands.idx] * cands.valid  # (n, Q, M)
        delta = (tv[None] - bottleneck[:, cands.idx]) * cands.valid  # (B, Q, M)
        return base[:, None, :] + torch.einsum("bqm,nqm->bqn", delta, wsel)
    o, _ = cands.dense(c)
    v = torch.zeros(q, c, device=bottleneck.device, dtype=bottleneck.dtype)
    rows = torch.arange(q, device=bottleneck.device)[:, None].expand_as(cands.idx)
    v[rows[cands.valid], cands.idx[cands.valid]] = tv[cands.valid].to(bottleneck.dtype)
    chunk = max(1, max_elems // max(1, q * c))
    outs = []
    for s in range(0, b, chunk):
        cur = bottleneck[s : s + chunk]
        cand = cur[:, None, :] * (1 - o) + v * o  # (b, Q, C)
        out = model.head(cand.reshape(-1, c))
        outs.append(out.reshape(cur.shape[0], q, -1))
    return torch.cat(outs)
