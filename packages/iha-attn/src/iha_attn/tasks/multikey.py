"""Multi-key (conjunctive) retrieval, RULER-MK-like (DESIGN.md §3.2 Experiment C).

A sequence of records ``k1 k2 v`` (each key is two tokens), with distractors sharing k1 or k2 with the
queried record, then ``? k1 k2`` and the target value. Token ids: keys [0, n_keys), values
[n_keys, n_keys + n_values), then '?' . Only the answer position is scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MultiKeySpec:
    n_records: int = 8
    n_keys: int = 8
    n_values: int = 16

    @property
    def vocab_size(self) -> int:
        return self.n_keys + self.n_values + 1

    @property
    def query_id(self) -> int:
        return self.n_keys + self.n_values

    @property
    def seq_len(self) -> int:
        return 3 * self.n_records + 3


def multikey_batch(spec: MultiKeySpec, batch_size: int, generator: torch.Generator | None = None):
    """(tokens [B, L], answer [B]); the model predicts ``answer`` at the last position.

    Keys (k1, k2) are distinct pairs within a sequence; half the other records share k1 with the
    target and half share k2, so neither single token identifies the record.
    """
    if spec.n_keys**2 < spec.n_records:
        raise ValueError("not enough distinct key pairs for n_records")
    toks = torch.empty(batch_size, spec.seq_len, dtype=torch.long)
    ans = torch.empty(batch_size, dtype=torch.long)
    for b in range(batch_size):
        t1, t2 = torch.randint(0, spec.n_keys, (2,), generator=generator).tolist()
        pairs = {(t1, t2)}
        while len(pairs) < spec.n_records:
            r = torch.randint(0, spec.n_keys, (2,), generator=generator).tolist()
            share = len(pairs) % 2  # alternate distractors sharing k1 / k2 with the target
            cand = (t1, r[1]) if share else (r[0], t2)
            if cand in pairs:
                cand = (r[0], r[1])
            pairs.add(cand)
        order = list(pairs)
        perm = torch.randperm(len(order), generator=generator).tolist()
        vals = torch.randint(0, spec.n_values, (spec.n_records,), generator=generator) + spec.n_keys
        seq = []
        for i, j in enumerate(perm):
            k1, k2 = order[j]
            seq += [k1, k2, int(vals[i])]
            if (k1, k2) == (t1, t2):
                ans[b] = vals[i]
        seq += [spec.query_id, t1, t2]
        toks[b] = torch.tensor(seq)
    return toks, ans
