"""Plain-torch reference quantizer: asymmetric min-max round-to-nearest with fp16 scale and zero.

Paper §1/§3.3.1/§4: "simple uniform quantization, with no special outlier handling or calibration",
group size 128, one fp16 scale and one fp16 zero per group (+0.25 bit/element at group 128).

Layout (shared with the Triton kernels in `xquant.kernels`):
* a tensor to quantize is ``[..., T, C]`` (tokens x channels);
* ``axis="token"``  : groups of `group_size` consecutive channels of one token, scale/zero ``[..., T, C/G]``;
* ``axis="channel"``: groups of `group_size` consecutive tokens of one channel, scale/zero ``[..., ceil(T/G), C]``;
* codes are always packed along channels as a little-endian bit stream: code j of a row occupies bits
  ``[b*j, b*j + b)`` of the row's uint8 words, so 2/4/8-bit codes never straddle a byte and 3-bit codes
  cost exactly 3 bits (8 codes in 3 bytes). Rows are padded to a multiple of 8 codes.
Rounding is floor(v + 0.5) (round half up) so the Triton kernels can match it bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

AXES = ("token", "channel")
#: Smallest scale; guards constant (zero-range) groups (DESIGN.md pitfall 7). Representable in fp16.
MIN_SCALE = 1e-5


def packed_row_bytes(channels: int, bits: int) -> int:
    """Bytes of one packed row of `channels` codes (padded to a multiple of 8 codes)."""
    return ((channels + 7) // 8) * bits


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer codes in [0, 2^bits) along the last dim into a uint8 bit stream (see module doc)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"can only pack 1..8-bit codes, got bits={bits}")
    c = codes.shape[-1]
    pad = (-c) % 8
    x = codes.to(torch.int64)
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    x = x.reshape(*x.shape[:-1], -1, 8)  # 8 codes -> one word of 8*bits bits
    shifts = torch.arange(8, device=x.device, dtype=torch.int64) * bits
    word = (x << shifts).sum(-1)  # disjoint bit ranges: sum == bitwise or
    byte_shifts = torch.arange(bits, device=x.device, dtype=torch.int64) * 8
    out = (word[..., None] >> byte_shifts) & 0xFF  # [..., c/8, bits]
    return out.reshape(*codes.shape[:-1], -1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, channels: int) -> torch.Tensor:
    """Inverse of `pack_bits`: uint8 stream -> codes [..., channels] (uint8).

    Works in uint8 for 2/4/8 bits (codes never straddle a byte) and in int32 for 3 bits (8 codes in a
    24-bit word), so the temporaries are at most 4x the codes, never int64 (issue 18: memory peak).
    """
    if bits == 8:
        return packed[..., :channels]
    lead = packed.shape[:-1]
    if 8 % bits == 0:
        per = 8 // bits
        shifts = torch.arange(per, device=packed.device, dtype=torch.uint8) * bits
        codes = (packed[..., None] >> shifts) & ((1 << bits) - 1)
        return codes.reshape(*lead, -1)[..., :channels]
    x = packed.reshape(*lead, -1, bits).to(torch.int32)
    byte_shifts = torch.arange(bits, device=x.device, dtype=torch.int32) * 8
    word = (x << byte_shifts).sum(-1, dtype=torch.int32)  # [..., c/8]
    shifts = torch.arange(8, device=x.device, dtype=torch.int32) * bits
    codes = ((word[..., None] >> shifts) & ((1 << bits) - 1)).to(torch.uint8)
    return codes.reshape(*lead, -1)[..., :channels]


@dataclass
class QTensor:
    """Packed codes plus fp16 scale/zero of a quantized ``[..., T, C]`` tensor."""

    codes: torch.Tensor  # uint8 [..., T, packed_row_bytes(C, bits)]
    scale: torch.Tensor  # fp16, shape per `axis` (module doc)
    zero: torch.Tensor  # fp16, same shape as scale
    bits: int
    group_size: int
    axis: str
    channels: int

    @property
    def tokens(self) -> int:
        return self.codes.shape[-2]

    def nbytes(self) -> int:
        """Real bytes held by the tensors (codes + scale + zero)."""
        return sum(t.numel() * t.element_size() for t in (self.codes, self.scale, self.zero))


def _check(x: torch.Tensor, bits: int, group_size: int, axis: str) -> None:
    if axis not in AXES:
        raise ValueError(f"axis={axis!r}; choose one of {AXES}")
    if bits not in (2, 3, 4, 8):
        raise ValueError(f"bits={bits} cannot be quantized; choose 2, 3, 4 or 8")
    if x.dim() < 2:
        raise ValueError(f"expected a [..., tokens, channels] tensor, got shape {tuple(x.shape)}")
    if axis == "token" and x.shape[-1] % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide the {x.shape[-1]} channels of a per-token group; "
            f"pick a group size that divides {x.shape[-1]}"
        )


def _scale_zero(mn: torch.Tensor, mx: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """fp16 scale s = (max - min)/(2^b - 1) and zero z = min (DESIGN.md §1.3)."""
    s = ((mx - mn) / (2**bits - 1)).clamp(min=MIN_SCALE)
    return s.to(torch.float16), mn.to(torch.float16)


def _codes(x: torch.Tensor, s: torch.Tensor, z: torch.Tensor, bits: int) -> torch.Tensor:
    v = (x - z.float()) / s.float()
    return torch.floor(v + 0.5).clamp_(0, 2**bits - 1).to(torch.uint8)


def quantize(
    x: torch.Tensor, bits: int, group_size: int, axis: str = "token", allow_partial: bool = False
) -> QTensor:
    """Quantize ``x [..., T, C]`` into packed `bits`-bit codes (asymmetric min-max RTN, fp16 scale/zero).

    Per-channel groups need T to be a multiple of `group_size`; a trailing partial group is only
    quantized when ``allow_partial`` (teacher-forced simulation), never silently in streaming.
    """
    _check(x, bits, group_size, axis)
    xf = x.float()
    *lead, t, c = xf.shape
    if axis == "token":
        g = xf.reshape(*lead, t, c // group_size, group_size)
        s, z = _scale_zero(g.amin(-1), g.amax(-1), bits)
        codes = _codes(g, s[..., None], z[..., None], bits).reshape(*lead, t, c)
    else:
        if t % group_size and not allow_partial:
            raise ValueError(
                f"per-channel quantization needs whole groups of {group_size} tokens, got {t} tokens"
            )
        chunks = list(torch.split(xf, group_size, dim=-2))
        ss, zs, cs = [], [], []
        for ch in chunks:
            s, z = _scale_zero(ch.amin(-2, keepdim=True), ch.amax(-2, keepdim=True), bits)
            ss.append(s)
            zs.append(z)
            cs.append(_codes(ch, s, z, bits))
        s, z, codes = torch.cat(ss, -2), torch.cat(zs, -2), torch.cat(cs, -2)
    return QTensor(pack_bits(codes, bits), s, z, bits, group_size, axis, c)


#: Elements dequantized per chunk: bounds the temporaries of `dequantize` (issue 18) to a few MiB
#: on top of the output itself, whatever the store size.
DEQUANT_CHUNK_ELEMENTS = 1 << 18


def _dequantize_rows(codes_packed, scale, zero, q: QTensor, t0: int) -> torch.Tensor:
    """Dequantize a slab of rows (tokens t0.. of `q`) in fp32."""
    codes = unpack_bits(codes_packed, q.bits, q.channels).float()
    *lead, t, c = codes.shape
    if q.axis == "token":
        g = codes.reshape(*lead, t, c // q.group_size, q.group_size)
        out = g * scale.float()[..., None] + zero.float()[..., None]
        return out.reshape(*lead, t, c)
    idx = (torch.arange(t, device=codes.device) + t0) // q.group_size
    return codes * scale.float().index_select(-2, idx) + zero.float().index_select(-2, idx)


def dequantize(q: QTensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """x̂ = code * s + z, in `dtype` (arithmetic in fp32), unpacked in bounded chunks of tokens.

    The output is allocated once; each chunk's fp32 temporaries hold at most about
    `DEQUANT_CHUNK_ELEMENTS` elements, so the peak is the output plus a bounded constant.
    """
    *lead, t, _ = q.codes.shape
    c = q.channels
    out = torch.empty(*lead, t, c, dtype=dtype, device=q.codes.device)
    rows_per_token = max(1, math.prod(lead)) * c
    step = max(1, DEQUANT_CHUNK_ELEMENTS // max(1, rows_per_token))
    for t0 in range(0, t, step):
        t1 = min(t, t0 + step)
        if q.axis == "token":
            s, z = q.scale[..., t0:t1, :], q.zero[..., t0:t1, :]
        else:
            s, z = q.scale, q.zero
        out[..., t0:t1, :] = _dequantize_rows(q.codes[..., t0:t1, :], s, z, q, t0)
    return out


def fake_quantize(x: torch.Tensor, bits: int, group_size: int, axis: str = "token") -> torch.Tensor:
    """dequantize(quantize(x)) in x's dtype; bits=16 returns x unchanged. Partial per-channel groups allowed."""
    if bits == 16:
        return x
    return dequantize(quantize(x, bits, group_size, axis, allow_partial=True), x.dtype)


def concat(a: QTensor | None, b: QTensor) -> QTensor:
    """Append quantized tokens `b` after `a` (per-channel chunks must be whole groups)."""
    if a is None:
        return b
    if (a.bits, a.group_size, a.axis, a.channels) != (b.bits, b.group_size, b.axis, b.channels):
        raise ValueError("cannot concatenate QTensors with different bits/group/axis/channels")
    return QTensor(
        torch.cat([a.codes, b.codes], -2),
        torch.cat([a.scale, b.scale], -2),
        torch.cat([a.zero, b.zero], -2),
        a.bits,
        a.group_size,
        a.axis,
        a.channels,
    )
