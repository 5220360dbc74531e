"""Test oracle: plain multi-head attention with given weights (independent of the IHA code path)."""

import math

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
