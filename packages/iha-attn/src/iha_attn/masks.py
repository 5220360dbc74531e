"""Masks over the N·P virtual sequence (DESIGN.md §1.2, §6.7, §6.11).

Virtual index t = n·P + p (token-major). Queries are the *last* Nq tokens of the S keys' tokens
(bottom-right alignment, which decoding with q_len = P per token needs; SDPA's ``is_causal`` is
top-left and wrong there). ``True`` means "may attend".
"""

from __future__ import annotations

import torch


def allowed(tq: torch.Tensor, tk: torch.Tensor, P: int, mask_mode: str, window: int | None) -> torch.Tensor:
    """Elementwise rule on virtual indices (broadcasting); shared by the dense mask, Flex and tests."""
    nq, nk = tq // P, tk // P
    if mask_mode == "flat_causal":
        ok = tk <= tq
        if window is not None:
            ok = ok & (tq - tk < window * P)
    elif mask_mode == "token_causal":
        ok = nk <= nq
        if window is not None:
            ok = ok & (nq - nk < window)
    elif mask_mode == "none":
        ok = torch.ones_like(tq - tk, dtype=torch.bool)
        if window is not None:
            ok = ok & ((nq - nk).abs() < window)
    else:
        raise ValueError(f"unknown mask_mode {mask_mode!r}")
    return ok


def virtual_mask(
    n_q: int,
    n_kv: int,
    P: int,
    mask_mode: str,
    window: int | None = None,
    q_offset: int | None = None,
    token_mask: torch.Tensor | None = None,
    device=None,
) -> torch.Tensor | None:
    """Bool mask ``[Nq·P, S·P]`` (or ``[B, 1|H, Nq·P, S·P]`` with a token mask); None if nothing is masked.

    ``token_mask`` is a token-level bool mask ``[B, 1|H, Nq, S]`` (padding, packing, a model's own
    sliding window); it is expanded with ``repeat_interleave(P)`` on both axes and AND-ed in (§6.11).
    """
    if q_offset is None:
        q_offset = n_kv - n_q
    if q_offset < 0:
        raise ValueError(f"more query tokens ({n_q}) than key tokens ({n_kv}) with no explicit q_offset")
    base = None
    if mask_mode != "none" or window is not None:
        tq = torch.arange(n_q * P, device=device) + q_offset * P
        tk = torch.arange(n_kv * P, device=device)
        base = allowed(tq[:, None], tk[None, :], P, mask_mode, window)
    if token_mask is not None:
        if token_mask.dtype != torch.bool:
            raise TypeError(f"token_mask must be a bool tensor (True = attend), got {token_mask.dtype}")
        if token_mask.shape[-2:] != (n_q, n_kv):
            raise ValueError(f"token_mask has shape {tuple(token_mask.shape)}, expected [..., {n_q}, {n_kv}]")
        tm = token_mask.repeat_interleave(P, dim=-1).repeat_interleave(P, dim=-2)
        base = tm if base is None else tm & base
    return base
