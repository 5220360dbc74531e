"""Roofline golden numbers (paper eq. 3/4, DESIGN.md §5.2) and paper-convention memory ratios (Table 1/4)."""

import pytest

from xquant import KIVIConfig, XQuantConfig
from xquant.accounting import HARDWARE, breakeven_context, paper_ratio_kivi, paper_ratio_xquant


def test_paper_breakeven_mha_and_gqa():
    assert breakeven_context(4096, 2, HARDWARE["paper"]) == pytest.approx(2281, abs=1)
    assert breakeven_context(4096, 2, HARDWARE["paper"], groups=4) == pytest.approx(40627, abs=1)


def test_breakeven_divides_by_batch():
    one = breakeven_context(4096, 4.25, HARDWARE["h200"])
    assert breakeven_context(4096, 4.25, HARDWARE["h200"], batch=8) == pytest.approx(one / 8)
    assert 1000 < one < 1400  # DESIGN.md §5.2: ≈1.2K on an H200 at batch 1


def test_paper_memory_ratios():
    # Llama-2-7B (MHA, d=4096, 32 layers): XQuant-4 0.133, XQuant-3 0.102, KIVI*-2 0.141
    assert paper_ratio_xquant(XQuantConfig(bits=4), 4096, 4096, 32) == pytest.approx(4.25 / 32)
    assert paper_ratio_xquant(XQuantConfig(bits=3), 4096, 4096, 32) == pytest.approx(3.25 / 32)
    assert paper_ratio_kivi(KIVIConfig(bits=2), 32) == pytest.approx(2.25 / 16)
    # XQuant-CL-2 with first 3 layers 4-bit, base layer 2: (3*4.25 + 29*2.25)/32/32 ≈ 0.076 ("0.08")
    cl = XQuantConfig(bits=2, cross_layer=True, base_layer=2, early_layers=3)
    assert paper_ratio_xquant(cl, 4096, 4096, 32) == pytest.approx((3 * 4.25 + 29 * 2.25) / 32 / 32)
    # GQA latent (Llama-3.1-8B): same bytes as KIVI at equal bits
    assert paper_ratio_xquant(XQuantConfig(bits=2), 4096, 1024, 32) == pytest.approx(2.25 / 16)
