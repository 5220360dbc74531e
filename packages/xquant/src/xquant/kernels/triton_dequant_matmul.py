"""Triton fused dequantize + matmul: rematerialize K/V = deq(X codes) · W (+ bias) (+ RoPE epilogue).

Mixed-input GEMM (DESIGN.md §5.3, Stage 1): A = packed b-bit codes of X̂ [M, K] with fp16 scale/zero per
(row, K-group) (per-token) or per (row-group, channel) (per-channel), B = W [K, N] in fp16/fp32.
Codes are unpacked and dequantized in registers tile by tile (never materialized in memory) and
accumulated in fp32. With `rope=(cos, sin)` and BLOCK_N = head_dim, the key's RoPE is applied in the
epilogue on the two rotate-half halves (bias first, RoPE last, as in HF attention).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..quant import QTensor


@triton.jit
def _load_deq(codes_ptr, s_ptr, z_ptr, offs_m, offs_k, M, K, NBYTES, stride_cm, stride_s0, stride_s1,
              BITS: tl.constexpr, G: tl.constexpr, PER_TOKEN: tl.constexpr):  # fmt: skip
    """Dequantized A tile [BM, BK] in fp32 from the bit stream (codes may straddle two bytes)."""
    mmask = offs_m[:, None] < M
    kmask = offs_k[None, :] < K
    bitpos = offs_k * BITS
    byte = bitpos >> 3
    sh = bitpos & 7
    p = codes_ptr + offs_m[:, None] * stride_cm + byte[None, :]
    b0 = tl.load(p, mask=mmask & kmask, other=0).to(tl.int32)
    b1 = tl.load(p + 1, mask=mmask & kmask & ((byte[None, :] + 1) < NBYTES), other=0).to(tl.int32)
    q = ((b0 | (b1 << 8)) >> sh[None, :]) & (2**BITS - 1)
    if PER_TOKEN:
        so = offs_m[:, None] * stride_s0 + (offs_k[None, :] // G) * stride_s1
    else:
        so = (offs_m[:, None] // G) * stride_s0 + offs_k[None, :] * stride_s1
    s = tl.load(s_ptr + so, mask=mmask & kmask, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + so, mask=mmask & kmask, other=0.0).to(tl.float32)
    return q.to(tl.float32) * s + z


@triton.jit
def _deq_kernel(
    codes_ptr, s_ptr, z_ptr, add_ptr, out_ptr, M, K, NBYTES,
    stride_cm, stride_s0, stride_s1, stride_am, stride_om,
    BITS: tl.constexpr, G: tl.constexpr, PER_TOKEN: tl.constexpr, HAS_ADD: tl.constexpr,
    BM: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """out = deq(codes) (+ add): KIVI's K/V reads and the MHA XQuant-CL accumulator update."""
    offs_m = tl.program_id(0) * BM + tl.arange(0, BM)
    offs_k = tl.program_id(1) * BK + tl.arange(0, BK)
    a = _load_deq(codes_ptr, s_ptr, z_ptr, offs_m, offs_k, M, K, NBYTES, stride_cm, stride_s0, stride_s1,
                  BITS, G, PER_TOKEN)  # fmt: skip
    mask = (offs_m[:, None] < M) & (offs_k[None, :] < K)
    if HAS_ADD:
        a += tl.load(add_ptr + offs_m[:, None] * stride_am + offs_k[None, :], mask=mask, other=0.0).to(
            tl.float32
        )
    tl.store(
        out_ptr + offs_m[:, None] * stride_om + offs_k[None, :], a.to(out_ptr.dtype.element_ty), mask=mask
    )


def dequantize_fused(
    q: QTensor, out_dtype: torch.dtype = torch.float32, add: torch.Tensor | None = None, block: int = 32
) -> torch.Tensor:
    """deq(q) [..., T, C] (+ `add` of the same shape), unpacked and scaled in registers."""
    lead, t, c = q.codes.shape[:-2], q.codes.shape[-2], q.channels
    if q.axis == "channel" and t % q.group_size:
        raise ValueError("per-channel codes must hold whole token groups for the fused kernel")
    codes = q.codes.reshape(-1, q.codes.shape[-1]).contiguous()
    s = q.scale.reshape(-1, q.scale.shape[-1]).contiguous()
    z = q.zero.reshape(-1, q.zero.shape[-1]).contiguous()
    m = codes.shape[0]
    out = torch.empty(m, c, dtype=out_dtype, device=codes.device)
    a = out
    if add is not None:
        if tuple(add.shape) != (*lead, t, c):
            raise ValueError(f"add has shape {tuple(add.shape)}, expected {(*lead, t, c)}")
        a = add.reshape(m, c).contiguous()
    if m:
        grid = (triton.cdiv(m, block), triton.cdiv(c, block))
        _deq_kernel[grid](
            codes, s, z, a, out, m, c, codes.shape[1],
            codes.stride(0), s.stride(0), s.stride(1), a.stride(0), out.stride(0),
            BITS=q.bits, G=q.group_size, PER_TOKEN=q.axis == "token", HAS_ADD=add is not None, BM=block, BK=block,
        )  # fmt: skip
    return out.reshape(*lead, t, c)


@triton.jit
def _dqmm_kernel(
    codes_ptr, s_ptr, z_ptr, w_ptr, b_ptr, cos_ptr, sin_ptr, add_ptr, out_ptr,
    M, N, K, NBYTES,
    stride_cm, stride_s0, stride_s1, stride_wk, stride_wn, stride_om, stride_on, stride_rm, stride_am,
    BITS: tl.constexpr, G: tl.constexpr, PER_TOKEN: tl.constexpr, HAS_BIAS: tl.constexpr,
    ROPE: tl.constexpr, HAS_ADD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BM + tl.arange(0, BM)
    if ROPE:
        # one program per head: columns [h*2BN, h*2BN+BN) and [.. + BN, .. + 2BN) are the two halves
        offs_n1 = pid_n * 2 * BN + tl.arange(0, BN)
        offs_n2 = offs_n1 + BN
    else:
        offs_n1 = pid_n * BN + tl.arange(0, BN)
        offs_n2 = offs_n1
    acc1 = tl.zeros((BM, BN), dtype=tl.float32)
    acc2 = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        offs_k = k0 + tl.arange(0, BK)
        a = _load_deq(codes_ptr, s_ptr, z_ptr, offs_m, offs_k, M, K, NBYTES, stride_cm, stride_s0, stride_s1,
                      BITS, G, PER_TOKEN)  # fmt: skip
        kmask = offs_k[:, None] < K
        w1 = tl.load(w_ptr + offs_k[:, None] * stride_wk + offs_n1[None, :] * stride_wn,
                     mask=kmask & (offs_n1[None, :] < N), other=0.0)  # fmt: skip
        acc1 += tl.dot(a.to(w1.dtype), w1, out_dtype=tl.float32)
        if ROPE:
            w2 = tl.load(w_ptr + offs_k[:, None] * stride_wk + offs_n2[None, :] * stride_wn,
                         mask=kmask & (offs_n2[None, :] < N), other=0.0)  # fmt: skip
            acc2 += tl.dot(a.to(w2.dtype), w2, out_dtype=tl.float32)
    if HAS_BIAS:
        acc1 += tl.load(b_ptr + offs_n1, mask=offs_n1 < N, other=0.0).to(tl.float32)[None, :]
        if ROPE:
            acc2 += tl.load(b_ptr + offs_n2, mask=offs_n2 < N, other=0.0).to(tl.float32)[None, :]
    mmask = offs_m[:, None] < M
    if ROPE:
        hd = tl.arange(0, BN)
        rp = offs_m[:, None] * stride_rm + hd[None, :]
        c1 = tl.load(cos_ptr + rp, mask=mmask, other=0.0).to(tl.float32)
        s1 = tl.load(sin_ptr + rp, mask=mmask, other=0.0).to(tl.float32)
        c2 = tl.load(cos_ptr + rp + BN, mask=mmask, other=0.0).to(tl.float32)
        s2 = tl.load(sin_ptr + rp + BN, mask=mmask, other=0.0).to(tl.float32)
        o1 = acc1 * c1 - acc2 * s1  # y*cos + rotate_half(y)*sin, first half
        o2 = acc2 * c2 + acc1 * s2  # second half
        tl.store(out_ptr + offs_m[:, None] * stride_om + offs_n2[None, :] * stride_on,
                 o2.to(out_ptr.dtype.element_ty), mask=mmask & (offs_n2[None, :] < N))  # fmt: skip
    else:
        o1 = acc1
        if HAS_ADD:  # the XQuant-CL accumulator: out = add + deq(Δ)·W (GQA-CL: W = U_kvᵀ)
            o1 += tl.load(add_ptr + offs_m[:, None] * stride_am + offs_n1[None, :],
                          mask=mmask & (offs_n1[None, :] < N), other=0.0).to(tl.float32)  # fmt: skip
    tl.store(out_ptr + offs_m[:, None] * stride_om + offs_n1[None, :] * stride_on,
             o1.to(out_ptr.dtype.element_ty), mask=mmask & (offs_n1[None, :] < N))  # fmt: skip


def dequant_matmul(
    q: QTensor,
    w: torch.Tensor,
    bias: torch.Tensor | None = None,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    head_dim: int | None = None,
    out_dtype: torch.dtype = torch.float32,
    block_m: int = 32,
    block_n: int = 32,
    add: torch.Tensor | None = None,
) -> torch.Tensor:
    """deq(q) [..., T, K] @ w [K, N] (+ bias) (+ RoPE per head) (+ add [..., T, N]), fused; returns [..., T, N]."""
    k, n = w.shape
    if q.channels != k:
        raise ValueError(f"codes have {q.channels} channels but w has {k} rows")
    lead = q.codes.shape[:-2]
    t = q.codes.shape[-2]
    if q.axis == "channel" and t % q.group_size:
        raise ValueError("per-channel codes must hold whole token groups for the fused kernel")
    codes = q.codes.reshape(-1, q.codes.shape[-1]).contiguous()
    s = q.scale.reshape(-1, q.scale.shape[-1]).contiguous()
    z = q.zero.reshape(-1, q.zero.shape[-1]).contiguous()
    m = codes.shape[0]
    bk = 16 if q.group_size % 32 else 32
    if q.axis == "token" and q.group_size % bk:
        raise ValueError(f"group_size={q.group_size} must be a multiple of 16 for the fused kernel")
    out = torch.empty(m, n, dtype=out_dtype, device=codes.device)
    a = out
    if add is not None:
        if rope is not None:
            raise ValueError("add= and rope= cannot be combined")
        if tuple(add.shape) != (*lead, t, n):
            raise ValueError(f"add has shape {tuple(add.shape)}, expected {(*lead, t, n)}")
        a = add.reshape(m, n).contiguous()
    if rope is not None:
        if head_dim is None or n % head_dim or (head_dim // 2) < 16 or head_dim & (head_dim - 1):
            raise ValueError("the RoPE epilogue needs a power-of-two head_dim >= 32 dividing N")
        cos = rope[0].reshape(-1, head_dim).contiguous()
        sin = rope[1].reshape(-1, head_dim).contiguous()
        bn, grid_n = head_dim // 2, n // head_dim
    else:
        cos = sin = out
        bn, grid_n = block_n, triton.cdiv(n, block_n)
    if m:
        _dqmm_kernel[(triton.cdiv(m, block_m), grid_n)](
            codes, s, z, w, bias if bias is not None else out, cos, sin, a, out,
            m, n, k, codes.shape[1],
            codes.stride(0), s.stride(0), s.stride(1), w.stride(0), w.stride(1), out.stride(0), out.stride(1),
            cos.stride(0), a.stride(0),
            BITS=q.bits, G=q.group_size, PER_TOKEN=q.axis == "token", HAS_BIAS=bias is not None,
            ROPE=rope is not None, HAS_ADD=add is not None, BM=block_m, BN=bn, BK=bk,
        )  # fmt: skip
    return out.reshape(*lead, t, n)
