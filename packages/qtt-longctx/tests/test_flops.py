"""Acceptance: the FLOP helper (Eq. 3.2, App. C)."""

import pytest

from paperworks_shared.models import tiny_config
from qtt_longctx import flops


def test_thinking_equivalent_eq_3_2():
    assert flops.thinking_equivalent(32, 128) == 8192
    assert flops.thinking_equivalent(0, 128) == 0
    assert flops.match_steps(8192, 128) == 32
    assert flops.match_steps(8191, 128) == 31
    with pytest.raises(ValueError):
        flops.match_steps(100, 0)


def test_app_c_formulas_by_hand():
    s = flops.Shape(layers=2, hidden=4, mlp_ratio=1.0)
    assert s.c_quad == 16 and s.c_tok == 6 * 2 * 16
    assert flops.prefill_flops(s, 10) == 16 * 100 + 192 * 10
    assert flops.generation_flops(s, 3, 10) == 16 * (30 + 3) + 192 * 3
    assert flops.step_flops(s, 5, 10) == 2 * (16 * 50 + 4 * 2 * 5 * 16)


def test_exact_equivalent_approaches_eq_3_2_at_long_context():
    s = flops.Shape(layers=36, hidden=2560, mlp_ratio=5.7)  # Qwen3-4B-like
    exact = flops.thinking_equivalent_exact(s, 32, 128, 131072)
    assert abs(exact - 8192) / 8192 < 0.05
    # and the budget it returns is FLOP-matched
    budget = 32 * flops.step_flops(s, 128, 131072)
    assert flops.generation_flops(s, exact, 131072) <= budget < flops.generation_flops(s, exact + 1, 131072)


def test_account_from_config():
    cfg = tiny_config("llama")
    acc = flops.account(cfg, context_len=512, steps=4, span_len=32, decode_tokens=8, spans="full")
    shape = flops.Shape.from_config(cfg)
    assert shape.mlp_ratio == 1.5 * 128 / 64
    assert acc.total == acc.prefill + acc.steps + acc.steps_discarded_kv + acc.decode
    assert acc.steps == 4 * flops.step_flops(shape, 32, 512)  # App. C: every span against the whole context
    assert acc.steps_discarded_kv == 4 * 2 * shape.layers * 32 * 64 * shape.kv_dim
