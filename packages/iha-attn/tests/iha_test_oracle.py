"""Test oracle: plain multi-head attention with given weights (independent of the IHA code path)."""

import math

import numpy as np
import torch


def rope_tables(n, d, theta=10000.0, offset=0):
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.arange(offset, offset + n, dtype=torch.float64)[:, None] * inv
    emb = torch.cat([ang, ang], -1)
    return emb.cos(), emb.sin()


def rot(x, cos, sin):
    x1, x2 = x.chunk(2, -1)
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], -1) * sin.to(x.dtype)


def mha_reference(x, wq, wk, wv, wo, H, Hkv, causal=True, rope=False):
    """softmax(QKᵀ/√d)V per head with explicit loops-free math; GQA by repeating KV heads."""
    b, n, _ = x.shape
    d = wq.shape[0] // H
    dv = wv.shape[0] // Hkv
    q = (x @ wq.T).view(b, n, H, d).transpose(1, 2)
    k = (x @ wk.T).view(b, n, Hkv, d).transpose(1, 2)
    v = (x @ wv.T).view(b, n, Hkv, dv).transpose(1, 2)
    if rope:
        cos, sin = rope_tables(n, d)
        q, k = rot(q, cos, sin), rot(k, cos, sin)
    k = k.repeat_interleave(H // Hkv, 1)
    v = v.repeat_interleave(H // Hkv, 1)
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.softmax(s, -1) @ v
    return o.transpose(1, 2).reshape(b, n, H * dv) @ wo.T


# --------------------------------------------------------------------------------------------------
# An independent IHA oracle, written from the paper (§4) and DESIGN.md §1.2, in numpy float64
# with explicit loops. It shares no code with iha_attn: its own mixing, interleaving order, RoPE
# (pairs (i, i + d/2) rotated by pos·θ^(−2i/d)), masks and collapse.


def _np(t):
    return (
        t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)
    )


def _rotate(vec, pos, theta):
    """Rotate one head vector to position ``pos`` (rotate-half pairing, as Llama)."""
    d = vec.shape[-1]
    half = d // 2
    out = np.empty_like(vec)
    for i in range(half):
        ang = pos * theta ** (-2.0 * i / d)
        c, s = math.cos(ang), math.sin(ang)
        a, b = vec[i], vec[i + half]
        out[i] = a * c - b * s
        out[i + half] = b * c + a * s
    return out


def _visible(nq, pq, nk, pk, P, mask, window):
    tq, tk = nq * P + pq, nk * P + pk
    if mask == "flat_causal":
        return tk <= tq and (window is None or tq - tk < window * P)
    if mask == "token_causal":
        return nk <= nq and (window is None or nq - nk < window)
    return window is None or abs(nq - nk) < window


def iha_oracle(q, k, v, aq, ak, av, R, *, P=None, collapse="global", mask="flat_causal", window=None,
               rope="none", theta=10000.0, scale=None, q_offset=None, key_keep=None):  # fmt: skip
    """IHA on unmixed per-head ``q [B,H,Nq,d]``, ``k/v [B,Hkv,S,·]`` -> ``[B, Nq, H, dv]`` (numpy float64).

    Queries are tokens ``q_offset .. q_offset+Nq-1`` (default: the last Nq of the S key tokens).
    ``rope``: "virtual" rotates the mixed pseudo-vectors at n·P+p, "token" rotates q/k at n before
    mixing. ``key_keep [B, S]`` (bool) hides padded key tokens; a query row with nothing visible is 0.
    ``av=None``: values are not mixed (every pseudo-value is its own head's value).
    """
    q, k, v, aq, ak, R = (_np(t) for t in (q, k, v, aq, ak, R))
    av = None if av is None else _np(av)
    B, H, Nq, d = q.shape
    Hkv, S, dv = k.shape[1], k.shape[2], v.shape[-1]
    P = aq.shape[2]
    G = H // Hkv
    off = S - Nq if q_offset is None else q_offset
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = np.zeros((B, Nq, H, dv))
    for b in range(B):
        qb, kb = q[b].copy(), k[b].copy()
        if rope == "token":
            for m in range(H):
                for n in range(Nq):
                    qb[m, n] = _rotate(qb[m, n], off + n, theta)
            for m in range(Hkv):
                for s in range(S):
                    kb[m, s] = _rotate(kb[m, s], s, theta)
        o = np.zeros((H, Nq, P, dv))
        for h in range(H):
            g = h // G
            # pseudo-keys/values of KV head g for every (token s, pseudo p')
            kt = np.zeros((S, P, d))
            vt = np.zeros((S, P, dv))
            for s in range(S):
                for pk in range(P):
                    kt[s, pk] = sum(ak[m, g, pk] * kb[m, s] for m in range(Hkv))
                    vt[s, pk] = (
                        v[b, g, s] if av is None else sum(av[m, g, pk] * v[b, m, s] for m in range(Hkv))
                    )
                    if rope == "virtual":
                        kt[s, pk] = _rotate(kt[s, pk], s * P + pk, theta)
            for n in range(Nq):
                for p in range(P):
                    qt = sum(aq[m, h, p] * qb[m, n] for m in range(H))
                    if rope == "virtual":
                        qt = _rotate(qt, (off + n) * P + p, theta)
                    scores, vals = [], []
                    for s in range(S):
                        if key_keep is not None and not bool(key_keep[b][s]):
                            continue
                        for pk in range(P):
                            if _visible(off + n, p, s, pk, P, mask, window):
                                scores.append(float(qt @ kt[s, pk]) * scale)
                                vals.append(vt[s, pk])
                    if scores:
                        w = np.exp(np.array(scores) - max(scores))
                        o[h, n, p] = (w / w.sum()) @ np.array(vals)
        for n in range(Nq):
            for h in range(H):
                if collapse == "global":
                    out[b, n, h] = sum(R[h, h2 * P + p] * o[h2, n, p] for h2 in range(H) for p in range(P))
                else:
                    out[b, n, h] = sum(R[h, p] * o[h, n, p] for p in range(P))
    return torch.from_numpy(out)
