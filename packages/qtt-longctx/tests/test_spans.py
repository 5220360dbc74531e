"""Span samplers keep every span and its targets inside the prompt."""

import torch

from paperworks_shared.models import tiny_causal_lm
from qtt_longctx import QTTConfig, adapt
from qtt_longctx import spans as S


def test_uniform_covers_the_admissible_range():
    g = torch.Generator().manual_seed(0)
    starts = {S.uniform(20, 5, g) for _ in range(400)}
    assert starts == set(range(0, 16))  # 0 <= t <= n_cached - k


def test_context_only_never_targets_the_question():
    g = torch.Generator().manual_seed(0)
    sample = S.context_only(question_len=6)
    assert max(sample(40, 8, g) for _ in range(300)) == 40 - 6 - 8


def test_short_prompt_uses_a_shorter_span():
    model = tiny_causal_lm("llama")
    ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(0))
    with adapt(model, ids, QTTConfig(steps=3, span_len=128, lr=1e-3)) as s:
        assert s.spans == [(0, 9)] * 3  # the 9 cached tokens, targets ids[1:10]


def test_context_only_sampler_in_adapt():
    model = tiny_causal_lm("llama")
    ids = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(0))
    cfg = QTTConfig(steps=6, span_len=8, lr=1e-3, span_sampler="context_only", question_len=10)
    with adapt(model, ids, cfg) as s:
        assert all(t + k <= 39 - 10 for t, k in s.spans)
