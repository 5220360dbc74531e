"""Backend-agnostic IHA maths (paper §4 steps 2-7; DESIGN.md §1.2).

Layout is SDPA's: ``[B, heads, tokens, dim]``. IHA is *standard attention over H heads of length N·P*
after a mixing einsum and a reshape (DESIGN.md §0), never H·P independent heads of length N.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .masks import allowed, virtual_mask
from .rope import apply_rope


def mix_heads(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Pseudo-heads as mixtures of all heads, interleaved token-major.

    ``x [B, Hs, N, d]``, ``alpha [Hs, Hs, P]`` indexed [source m, target h, pseudo p] ->
    ``[B, Hs, N·P, d]`` with virtual index n·P+p: x̃[b,h,nP+p] = Σ_m α[m,h,p]·x[b,m,n] (einsum
    'mhp,nmd→hpnd' + merge_pseudo of the paper's Algorithm 4).
    """
    if alpha.dim() != 3 or alpha.shape[0] != x.shape[1] or alpha.shape[1] != x.shape[1]:
        raise ValueError(f"alpha {tuple(alpha.shape)} does not match {x.shape[1]} heads (expected [H, H, P])")
    out = torch.einsum("bmnd,mhp->bhnpd", x, alpha.to(x.dtype))
    # einsum may hand back a permuted view (P = 1, N = 1): SDPA then falls to its slow math path
    return merge_pseudo(out).contiguous()


def merge_pseudo(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, N, P, d]`` -> ``[B, H, N·P, d]`` (interleave pseudo index into the sequence)."""
    b, h, n, p, d = x.shape
    return x.reshape(b, h, n * p, d)


def unmerge_pseudo(x: torch.Tensor, P: int) -> torch.Tensor:
    """``[B, H, N·P, d]`` -> ``[B, H, N, P, d]``."""
    b, h, t, d = x.shape
    if t % P:
        raise ValueError(f"virtual length {t} is not a multiple of P={P}")
    return x.reshape(b, h, t // P, P, d)


def collapse(o: torch.Tensor, R: torch.Tensor, mode: str) -> torch.Tensor:
    """Fold P pseudo-outputs back to H heads (paper §4.1 step 7). ``o [B, H, N, P, d]`` -> ``[B, N, H, d]``.

    global:   O[n,h] = Σ_{h',p} R[h, h'·P+p] · o[h', n, p]   (R ∈ R^{H×HP})
    per_head: O[n,h] = Σ_p      R[h, p]        · o[h,  n, p]   (R ∈ R^{H×P})
    """
    b, h, n, p, d = o.shape
    R = R.to(o.dtype)
    if mode == "global":
        if R.shape != (h, h * p):
            raise ValueError(f"global R must be [{h}, {h * p}], got {tuple(R.shape)}")
        return torch.einsum("hk,bknd->bnhd", R, o.permute(0, 1, 3, 2, 4).reshape(b, h * p, n, d))
    if mode == "per_head":
        if R.shape != (h, p):
            raise ValueError(f"per-head R must be [{h}, {p}], got {tuple(R.shape)}")
        return torch.einsum("hp,bhnpd->bnhd", R, o)
    raise ValueError(f"unknown collapse {mode!r}; choose 'global' or 'per_head'")


def _expand_kv(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    rep = n_heads // x.shape[1]
    return x if rep == 1 else x.repeat_interleave(rep, dim=1)


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32 for reductions; fp32 and fp64 stay as they are (float64 is computed in float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def attend_eager(qm, km, vm, mask, scale, softmax="softmax", dropout=0.0, training=False):
    """Reference attention over the virtual sequence with an explicit bool mask (also linear attention)."""
    km, vm = _expand_kv(km, qm.shape[1]), _expand_kv(vm, qm.shape[1])
    scores = torch.matmul(qm, km.transpose(-1, -2)) * scale
    if softmax == "linear":  # theory form (paper App. B.2): no normalisation, masked entries are 0
        w = scores if mask is None else scores.masked_fill(~mask, 0.0)
    else:
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = torch.softmax(_upcast(scores), dim=-1).to(qm.dtype)
        w = torch.nan_to_num(w, nan=0.0)  # fully masked (padding) rows -> 0, DESIGN.md pitfall 11
    if dropout and training:
        w = F.dropout(w, p=dropout)
    return torch.matmul(w, vm)


def attend_sdpa(qm, km, vm, mask, scale, *, is_causal=False, dropout=0.0, training=False):
    """PyTorch SDPA over the virtual sequence; rows with no visible key are zeroed instead of NaN."""
    empty = None
    if mask is not None:  # no data-dependent branch (torch.compile fullgraph): always patch empty rows
        empty = ~mask.any(dim=-1, keepdim=True)
        mask = mask | empty
    gqa = km.shape[1] != qm.shape[1]
    o = F.scaled_dot_product_attention(
        qm,
        km,
        vm,
        attn_mask=mask,
        dropout_p=dropout if training else 0.0,
        is_causal=is_causal and mask is None,
        scale=scale,
        enable_gqa=gqa,
    )
    return o if empty is None else o.masked_fill(empty, 0.0)


_BLOCK_MASKS: dict[tuple, object] = {}  # (mask kind, Nq, S, P, window, q_offset, device) -> BlockMask
_BLOCK_MASKS_MAX = 64
_COMPILED_FLEX: dict[str, object] = {}


def flex_compile_enabled(device: torch.device) -> bool:
    """Compiled FlexAttention: on by default on CUDA; on CPU (inference only there) only with
    ``IHA_FLEX_COMPILE=1``, since inductor's CPU codegen costs ~15 s per shape and needs a C++ compiler.
    ``IHA_FLEX_COMPILE=0`` turns it off everywhere (debugging)."""
    import os

    env = os.environ.get("IHA_FLEX_COMPILE")
    if env is not None:
        return env == "1"
    return device.type == "cuda"


def _flex_fn(device: torch.device):
    from torch.nn.attention.flex_attention import flex_attention

    if not flex_compile_enabled(device):
        return flex_attention
    if "fn" not in _COMPILED_FLEX:
        _COMPILED_FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    return _COMPILED_FLEX["fn"]


def flex_block_mask(mask_mode: str, n_q: int, n_kv: int, P: int, window: int | None, q_offset: int, device):
    """The structural BlockMask of a virtual mask, built once per (mask kind, Nq, S, P, window, offset,
    device) and shared by every layer and call (a bounded module-level cache)."""
    from torch.nn.attention.flex_attention import create_block_mask

    key = (mask_mode, n_q, n_kv, P, window, q_offset, str(device))
    bm = _BLOCK_MASKS.get(key)
    if bm is None:
        off = q_offset * P

        def mask_mod(b, h, q_idx, kv_idx):
            return allowed(q_idx + off, kv_idx, P, mask_mode, window)

        bm = create_block_mask(mask_mod, None, None, n_q * P, n_kv * P, device=device)
        if len(_BLOCK_MASKS) >= _BLOCK_MASKS_MAX:
            _BLOCK_MASKS.pop(next(iter(_BLOCK_MASKS)))
        _BLOCK_MASKS[key] = bm
    return bm


def attend_flex(qm, km, vm, *, P, mask_mode, window, q_offset, token_mask, scale):
    """FlexAttention with the virtual-unit mask as a ``mask_mod`` (CPU: inference only, DESIGN.md §4.2).

    Without a token mask the BlockMask comes from `flex_block_mask` (cached, shared across layers) and
    the call is compiled where `flex_compile_enabled`. A token mask (padding, packing) is data: its
    BlockMask is built per call from the token-level mask (read at q//P, kv//P, never expanded P-fold)
    and run by the uncompiled FlexAttention. Rows with no visible key give 0.
    """
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if qm.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (qm, km, vm)):
        raise RuntimeError(
            "backend='flex' cannot train on CPU (FlexAttention has no CPU backward in this torch); "
            "use backend='sdpa' (same maths, explicit mask) or wrap inference in torch.no_grad()"
        )
    gqa = km.shape[1] != qm.shape[1]
    n_q, n_kv = qm.shape[2] // P, km.shape[2] // P
    if token_mask is None:
        bm = flex_block_mask(mask_mode, n_q, n_kv, P, window, q_offset, qm.device)
        return _flex_fn(qm.device)(qm, km, vm, block_mask=bm, scale=scale, enable_gqa=gqa)
    off = q_offset * P
    tm = token_mask
    per_head = tm.shape[1] != 1

    def mask_mod(b, h, q_idx, kv_idx):
        keep = tm[b, h if per_head else 0, q_idx // P, kv_idx // P]
        return allowed(q_idx + off, kv_idx, P, mask_mode, window) & keep

    bm = create_block_mask(
        mask_mod, qm.shape[0], qm.shape[1] if per_head else None, qm.shape[2], km.shape[2], device=qm.device
    )
    o = flex_attention(qm, km, vm, block_mask=bm, scale=scale, enable_gqa=gqa)
    empty = ~tm.any(dim=-1, keepdim=True).repeat_interleave(P, dim=-2)  # [B, 1|H, Nq·P, 1]
    return o.masked_fill(empty, 0.0)


def iha_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha_q: torch.Tensor,
    alpha_k: torch.Tensor,
    alpha_v: torch.Tensor | None,
    R: torch.Tensor,
    *,
    collapse_mode: str = "global",
    mask_mode: str = "flat_causal",
    window: int | None = None,
    scale: float | None = None,
    backend: str = "sdpa",
    softmax: str = "softmax",
    token_mask: torch.Tensor | None = None,
    q_offset: int | None = None,
    rope_q: tuple[torch.Tensor, torch.Tensor] | None = None,
    rope_k: tuple[torch.Tensor, torch.Tensor] | None = None,
    dropout: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """Interleaved Head Attention on *unmixed* per-head projections; returns ``[B, Nq, H, dv]`` (pre-W_O).

    ``q [B, H, Nq, d]``, ``k [B, Hkv, S, d]``, ``v [B, Hkv, S, dv]`` (S >= Nq; queries are the last Nq
    tokens unless ``q_offset`` says otherwise: the KV cache keeps original-size K/V and this mixes on the
    fly). ``rope_q``/``rope_k`` are optional (cos, sin) tables at the *virtual* positions, applied after
    mixing (paper §4 step 4). ``token_mask`` is a token-level bool mask ``[B, 1|H, Nq, S]``.
    """
    P = alpha_q.shape[-1]
    if P < 1:
        raise ValueError("P must be >= 1")
    if alpha_k.shape[-1] != P or (alpha_v is not None and alpha_v.shape[-1] != P):
        raise ValueError("alpha_q, alpha_k and alpha_v must share the same P")
    b, h, n_q, d = q.shape
    n_kv = k.shape[2]
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads are not divisible by {k.shape[1]} KV heads")
    if q_offset is None:
        q_offset = n_kv - n_q
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    qm, km = mix_heads(q, alpha_q), mix_heads(k, alpha_k)
    vm = mix_heads(v, alpha_v) if alpha_v is not None else v.repeat_interleave(P, dim=2)
    if rope_q is not None:
        qm = apply_rope(qm, *rope_q)
    if rope_k is not None:
        km = apply_rope(km, *rope_k)
    if backend == "triton":
        from .kernels.triton_iha import iha_fwd

        if token_mask is not None:
            raise ValueError(
                "backend='triton' cannot express an arbitrary token mask (padding/packing); use 'sdpa' or 'flex'"
            )
        r_ph = R if collapse_mode == "per_head" else None
        o = iha_fwd(
            qm, km, vm, P=P, mask_mode=mask_mode, window=window, q_offset=q_offset, scale=scale, R=r_ph
        )
        if r_ph is not None:
            return o  # fused per-head collapse wrote [B, N, H, dv] directly
        return collapse(unmerge_pseudo(o, P), R, collapse_mode)
    if backend == "flex":
        o = attend_flex(
            qm,
            km,
            vm,
            P=P,
            mask_mode=mask_mode,
            window=window,
            q_offset=q_offset,
            token_mask=token_mask,
            scale=scale,
        )
    elif backend in ("sdpa", "eager"):
        if softmax == "linear" and backend != "eager":
            raise ValueError("softmax='linear' needs backend='eager'")
        simple_causal = mask_mode == "flat_causal" and window is None and token_mask is None and n_q == n_kv
        if backend == "sdpa" and simple_causal and q_offset == 0:
            o = attend_sdpa(qm, km, vm, None, scale, is_causal=True, dropout=dropout, training=training)
        else:
            mask = virtual_mask(n_q, n_kv, P, mask_mode, window, q_offset, token_mask, device=q.device)
            if backend == "eager":
                o = attend_eager(qm, km, vm, mask, scale, softmax, dropout, training)
            else:
                o = attend_sdpa(qm, km, vm, mask, scale, dropout=dropout, training=training)
    else:
        raise ValueError(f"unknown backend {backend!r}; choose sdpa, eager, flex or triton")
    return collapse(unmerge_pseudo(o, P), R, collapse_mode)


def hp_heads_shortcut(q, k, v, alpha_q, alpha_k, alpha_v, scale=None, causal=True):
    """The WRONG "H·P independent heads of length N, then mean over P" port (DESIGN.md pitfall 6), for regression tests.

    It yields P attention patterns per head instead of P²; IHA must differ from it.
    """
    P = alpha_q.shape[-1]
    b, h, n, d = q.shape
    qm = unmerge_pseudo(mix_heads(q, alpha_q), P).permute(0, 1, 3, 2, 4).reshape(b, h * P, n, d)
    km = unmerge_pseudo(mix_heads(k, alpha_k), P).permute(0, 1, 3, 2, 4).reshape(b, h * P, n, d)
    vm = unmerge_pseudo(mix_heads(v, alpha_v), P).permute(0, 1, 3, 2, 4).reshape(b, h * P, n, -1)
    o = F.scaled_dot_product_attention(qm, km, vm, is_causal=causal, scale=scale)
    return o.reshape(b, h, P, n, -1).mean(2).transpose(1, 2)


def _decode_scores_torch(qm, k, v, alpha_k, alpha_v, *, mask_mode, window, scale, token_mask, k_base, freqs):
    """Decode attention of one token's P pseudo-queries against the ORIGINAL-size cache, in torch.

    No P-fold pseudo-K/V is formed: with ``g`` the KV head of query head h,
    s[h, p_q, n, p_k] = Σ_m α_K[m, g, p_k] · (R(−p_k) q̃[h, p_q]) · (R(a_n) k[m, n])
    (virtual RoPE at a_n + p_k factors into a rotation of the cached key by a_n and of the query by
    −p_k), and o[h, p_q] = Σ_m Σ_n (Σ_{p_k} w[h, p_q, n, p_k] α_V[m, g, p_k]) v[m, n].
    ``qm [B,H,P,d]`` (mixed, already rotated), ``k/v [B,Hkv,S,·]`` -> ``[B,H,P,dv]``.
    """
    from .rope import apply_rope, cos_sin

    b, h, P, d = qm.shape
    hkv, S = k.shape[1], k.shape[2]
    grp = h // hkv
    g_of_h = torch.arange(h, device=qm.device) // grp
    cdt = _upcast(qm).dtype
    q = qm.to(cdt)
    kc, vc = k.to(cdt), v.to(cdt)
    if freqs is not None:  # virtual RoPE: key positions a_n + p_k
        rdt = torch.float64 if cdt == torch.float64 else torch.float32
        kc = apply_rope(kc, *cos_sin(k_base, freqs, dtype=rdt))  # ordinary size [B, Hkv, S, d]
        cp, sp = cos_sin(-torch.arange(P, device=qm.device), freqs, dtype=rdt)  # R(−p_k): [P, d]
        qr = apply_rope(q[:, :, :, None, :], cp, sp)  # [B, H, p_q, p_k, d]
    else:
        qr = q[:, :, :, None, :].expand(b, h, P, P, d)  # [B, H, p_q, p_k, d]
    a_k = alpha_k.to(cdt)[:, g_of_h, :]  # [Hkv(m), H, P(p_k)]
    qa = torch.einsum("bhqpd,mhp->bhqpmd", qr, a_k)  # query pre-mixed with α_K: [B,H,P,P,Hkv,d]
    s = torch.einsum("bhqpmd,bmnd->bhqnp", qa, kc) * scale  # [B, H, p_q, S, p_k]
    tq = (S - 1) * P + torch.arange(P, device=qm.device)  # bottom-right: the new token is the last one
    tk = torch.arange(S * P, device=qm.device)
    ok = allowed(tq[:, None], tk[None, :], P, mask_mode, window).view(P, S, P)
    if token_mask is not None:  # [B, 1|H, 1, S] -> broadcast over p_q and p_k
        ok = ok & token_mask[:, :, 0, None, :, None]
    s = s.masked_fill(~ok, float("-inf"))
    w = torch.softmax(s.flatten(-2), dim=-1).view_as(s)
    w = torch.nan_to_num(w, nan=0.0)  # a padded row with no visible key -> 0 (DESIGN.md pitfall 11)
    if alpha_v is None:
        wv = (
            w.sum(-1)[:, :, :, None, :]
            * torch.eye(hkv, dtype=cdt, device=qm.device)[g_of_h][None, :, None, :, None]
        )
    else:
        wv = torch.einsum("bhqnp,mhp->bhqmn", w, alpha_v.to(cdt)[:, g_of_h, :])  # [B, H, p_q, Hkv, S]
    o = torch.einsum("bhqmn,bmnd->bhqd", wv, vc)
    return o.to(qm.dtype)


def iha_decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha_q: torch.Tensor,
    alpha_k: torch.Tensor,
    alpha_v: torch.Tensor | None,
    R: torch.Tensor,
    *,
    collapse_mode: str = "global",
    mask_mode: str = "flat_causal",
    window: int | None = None,
    scale: float | None = None,
    token_mask: torch.Tensor | None = None,
    freqs: torch.Tensor | None = None,
    q_pos: torch.Tensor | None = None,
    k_base: torch.Tensor | None = None,
    use_kernel: bool | None = None,
) -> torch.Tensor:
    """One decode step (q_len = 1) against an original-size cache; returns ``[B, 1, H, dv]`` (pre-W_O).

    ``q [B, H, 1, d]``, ``k/v [B, Hkv, S, ·]`` (the cache including the new token, last). Virtual RoPE
    (``freqs`` given): the query's pseudo p sits at ``q_pos + p`` (``q_pos [B|1, 1]``) and key n's
    pseudo p at ``k_base[n] + p`` (``k_base [B|1, S]``); the module uses n·P, the transformers patch
    i·(P−1) on top of the model's own rotation. ``token_mask [B, 1|H, 1, S]`` (padding).
    ``use_kernel``: the Triton decode kernel (None = when it can run here: Triton and a CUDA tensor, or
    ``TRITON_INTERPRET=1``); otherwise the torch path. Neither builds P-fold pseudo-K/V of the cache.
    """
    from .rope import apply_rope, cos_sin

    if q.shape[2] != 1:
        raise ValueError(f"iha_decode_attention decodes one token, got q_len={q.shape[2]}")
    P = alpha_q.shape[-1]
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    rdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    qm = mix_heads(q, alpha_q)  # [B, H, P, d]: only the new token's P pseudo-queries
    if freqs is not None:
        if q_pos is None or k_base is None:
            raise ValueError("virtual RoPE in decode needs q_pos and k_base")
        qv = q_pos.reshape(q_pos.shape[0], 1) + torch.arange(P, device=q.device)
        qm = apply_rope(qm, *cos_sin(qv, freqs, dtype=rdt))
    kernel_mask = None
    if use_kernel is None:
        from .kernels import triton_iha

        use_kernel = triton_iha.can_decode(qm, k, v)
    if use_kernel and token_mask is not None:
        if token_mask.shape[1] != 1:
            use_kernel = False  # a per-head mask: the kernel takes one key mask per row
        else:
            kernel_mask = token_mask[:, 0, 0, :]
    if use_kernel:
        from .kernels.triton_iha import iha_decode

        rope_k = None
        if freqs is not None and k_base is not None:
            kpos = (k_base[..., :, None] + torch.arange(P, device=q.device)).flatten(-2)  # [B|1, S·P]
            rope_k = cos_sin(kpos, freqs, dtype=torch.float32)
        o = iha_decode(
            qm, k, v, alpha_k, alpha_v, mask_mode=mask_mode, window=window, scale=scale, rope_k=rope_k,
            key_mask=kernel_mask,
        )  # fmt: skip
    else:
        o = _decode_scores_torch(
            qm, k, v, alpha_k, alpha_v, mask_mode=mask_mode, window=window, scale=scale,
            token_mask=token_mask, k_base=k_base, freqs=freqs,
        )  # fmt: skip
    return collapse(o[:, :, None], R, collapse_mode)
