"""Analytic forward FLOP model per layer (DESIGN.md §5.1)."""

from __future__ import annotations


def layer_flops(
    N: int, D: int, H: int, P: int = 1, window: int | None = None, collapse: str = "global"
) -> dict:
    """Multiply-add = 2 FLOPs. Causal attention counts half the score matrix (ideal block skipping).

    * projections (Q, K, V, O): 8·N·D²
    * attention over N·P virtual tokens: 4·(NP)²·d·H/2 global, 4·NP·WP·d·H with a W-token window
    * mixing of Q, K, V: 6·N·H·P·D (P > 1 only); collapse 2·N·H·P·D (global) or 2·N·P·D (per-head)
    """
    d = D // H
    proj = 8 * N * D * D
    T = N * P
    if window is None:
        attn = 4 * T * T * d * H / 2
    else:
        attn = 4 * T * min(window * P, T) * d * H
    mix = 6 * N * H * P * D if P > 1 else 0
    col = (2 * N * H * P * D if collapse == "global" else 2 * N * P * D) if P > 1 else 0
    return {"projections": proj, "attention": attn, "mixing": mix + col, "total": proj + attn + mix + col}
