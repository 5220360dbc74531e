"""Quantizer properties (DESIGN.md §3.4 test 8): error bound, constant groups, packing, grouping errors."""

import pytest
import torch

from xquant.quant import dequantize, fake_quantize, pack_bits, packed_row_bytes, quantize, unpack_bits


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_pack_unpack_roundtrip(bits):
    g = torch.Generator().manual_seed(bits)
    for c in (8, 13, 64):
        codes = torch.randint(0, 2**bits, (3, 5, c), generator=g)
        packed = pack_bits(codes, bits)
        assert packed.dtype == torch.uint8
        assert packed.shape[-1] == packed_row_bytes(c, bits) == ((c + 7) // 8) * bits
        assert torch.equal(unpack_bits(packed, bits, c).long(), codes)


def test_pack_layout_is_little_endian_bitstream():
    # 2-bit codes 1,2,3,0 -> byte 0b00_11_10_01 = 0x39 ; 3-bit code 5 at j=2 sits at bits 6..8 (straddles)
    assert pack_bits(torch.tensor([1, 2, 3, 0, 0, 0, 0, 0]), 2).tolist() == [0x39, 0]
    p = pack_bits(torch.tensor([0, 0, 5, 0, 0, 0, 0, 0]), 3)
    assert p.tolist() == [(5 << 6) & 0xFF, 5 >> 2, 0]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("axis", ["token", "channel"])
def test_error_at_most_half_step(bits, axis):
    x = torch.randn(2, 32, 64, generator=torch.Generator().manual_seed(0)) * 3
    q = quantize(x, bits, 16, axis)
    xh = dequantize(q)
    if axis == "token":
        s = q.scale.float().repeat_interleave(16, -1)
    else:
        s = q.scale.float().repeat_interleave(16, -2)
    # half a step, plus fp16 rounding of the zero point
    assert ((x - xh).abs() <= s / 2 + 1e-3 * x.abs().max() / 2**bits + 1e-6).all()
    assert (x - xh).abs().max() > 0


def test_constant_groups_exact_and_codes_zero():
    x = torch.full((1, 4, 32), 0.5)  # fp16-representable value
    q = quantize(x, 2, 32, "token")
    assert torch.equal(dequantize(q), x)
    assert int(q.codes.sum()) == 0


def test_hand_computed_values():
    x = torch.tensor([[[0.0, 1.0, 2.0, 3.0, 0.4, 1.6, 2.5, 2.9]]])
    q = quantize(x, 2, 8, "token")  # min 0, max 3 -> scale 1
    assert q.scale.item() == 1.0 and q.zero.item() == 0.0
    assert unpack_bits(q.codes, 2, 8).tolist() == [[[0, 1, 2, 3, 0, 2, 3, 3]]]  # 2.5 rounds half up


def test_group_size_must_divide_channels():
    with pytest.raises(ValueError, match="does not divide"):
        quantize(torch.randn(1, 2, 48), 4, 32, "token")


def test_per_channel_needs_whole_groups_unless_partial():
    x = torch.randn(1, 10, 8)
    with pytest.raises(ValueError, match="whole groups"):
        quantize(x, 4, 8, "channel")
    q = quantize(x, 4, 8, "channel", allow_partial=True)
    assert q.scale.shape == (1, 2, 8)
    assert (dequantize(q) - x).abs().max() < (x.max() - x.min()) / 15


def test_bad_bits_rejected():
    with pytest.raises(ValueError, match="bits"):
        quantize(torch.randn(1, 2, 8), 5, 8)


def test_fake_quantize_16_is_identity():
    x = torch.randn(2, 3, 8)
    assert fake_quantize(x, 16, 8) is x
