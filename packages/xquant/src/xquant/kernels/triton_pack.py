"""Triton per-token quantize-and-pack (paper §1.3 quantizer; layout of `xquant.quant`).

One program per (row, group): min/max -> fp16 scale/zero -> codes (round half up) -> the group's
bytes of the little-endian bit stream (exact b bits per code, 3-bit included). Matches
`xquant.kernels.reference.quantize_pack_ref` bit for bit (tested under TRITON_INTERPRET=1).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..quant import MIN_SCALE, QTensor, packed_row_bytes


@triton.jit
def _quant_pack_kernel(
    x_ptr, codes_ptr, s_ptr, z_ptr,
    stride_x, stride_c, stride_s,
    BITS: tl.constexpr, G: tl.constexpr, NB: tl.constexpr, BLOCK_NB: tl.constexpr, MIN_S: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    grp = tl.program_id(1)
    offs = tl.arange(0, G)
    x = tl.load(x_ptr + row * stride_x + grp * G + offs).to(tl.float32)
    mn = tl.min(x, axis=0)
    mx = tl.max(x, axis=0)
    s = tl.maximum((mx - mn) / (2**BITS - 1), MIN_S)
    s16 = s.to(tl.float16)
    z16 = mn.to(tl.float16)
    tl.store(s_ptr + row * stride_s + grp, s16)
    tl.store(z_ptr + row * stride_s + grp, z16)
    v = (x - z16.to(tl.float32)) / s16.to(tl.float32)
    q = tl.minimum(tl.maximum(tl.floor(v + 0.5), 0.0), 2**BITS - 1).to(tl.int32)
    # byte k of this group collects the bits of every code j with b*j - 8k in (-b, 8)
    k = tl.arange(0, BLOCK_NB)
    sh = offs[None, :] * BITS - 8 * k[:, None]  # [BLOCK_NB, G]
    left = q[None, :] << tl.minimum(tl.maximum(sh, 0), 8)
    right = q[None, :] >> tl.minimum(tl.maximum(-sh, 0), 8)
    part = tl.where(sh >= 0, left, right) & 0xFF
    part = tl.where((sh > -BITS) & (sh < 8), part, 0)
    byte = tl.sum(part, axis=1)
    tl.store(codes_ptr + row * stride_c + grp * NB + k, byte.to(tl.uint8), mask=k < NB)


def quantize_pack(x: torch.Tensor, bits: int, group_size: int) -> QTensor:
    """Per-token quantize-and-pack of ``x [..., T, C]`` on the Triton backend."""
    if bits not in (2, 3, 4, 8):
        raise ValueError(f"bits={bits} cannot be quantized; choose 2, 3, 4 or 8")
    c = x.shape[-1]
    if c % group_size:
        raise ValueError(f"group_size={group_size} does not divide the {c} channels")
    if group_size & (group_size - 1) or group_size < 8:
        raise ValueError(f"the Triton kernel needs a power-of-two group size >= 8, got {group_size}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, c).contiguous()
    m = x2.shape[0]
    nb = group_size * bits // 8
    codes = torch.empty(m, packed_row_bytes(c, bits), dtype=torch.uint8, device=x.device)
    s = torch.empty(m, c // group_size, dtype=torch.float16, device=x.device)
    z = torch.empty_like(s)
    if m:
        _quant_pack_kernel[(m, c // group_size)](
            x2, codes, s, z, x2.stride(0), codes.stride(0), s.stride(0),
            BITS=bits, G=group_size, NB=nb, BLOCK_NB=triton.next_power_of_2(nb), MIN_S=MIN_SCALE,
        )  # fmt: skip
    return QTensor(
        codes.reshape(*lead, -1),
        s.reshape(*lead, -1),
        z.reshape(*lead, -1),
        bits,
        group_size,
        "token",
        c,
    )
