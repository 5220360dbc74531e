"""Acceptance: bit-exact restoration after normal exit and after exceptions; requests are isolated."""

import pytest
import torch

from paperworks_shared.models import tiny_causal_lm
from qtt_longctx import QTTConfig, adapt


def _state(model):
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def _same(model, ref):
    return all(torch.equal(p, ref[n]) for n, p in model.state_dict().items())


def _out(model, ids):
    with torch.no_grad():
        return model(ids).logits


CFG = QTTConfig(steps=4, span_len=12, lr=5e-2)


def test_restored_after_normal_exit(ids):
    model = tiny_causal_lm("qwen3", seed=0)
    model.train()  # mode and flags are restored too
    ref, ref_out = _state(model), _out(model.eval(), ids)
    model.train()
    with adapt(model, ids, CFG) as s:
        adapted = s.next_token_logits()
        assert not model.training
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert _same(model, ref)
    model.eval()
    assert torch.equal(_out(model, ids), ref_out)
    assert not torch.allclose(adapted, ref_out[0, -1])  # the adaptation did change the answer logits
    assert not any(m._forward_hooks for m in model.modules())


def test_restored_after_exception_in_body(ids):
    model = tiny_causal_lm("llama", seed=0)
    ref, ref_out = _state(model), _out(model, ids)
    with pytest.raises(KeyError):
        with adapt(model, ids, CFG):
            raise KeyError("boom")
    assert _same(model, ref) and torch.equal(_out(model, ids), ref_out)
    assert not any(m._forward_hooks for m in model.modules())


def test_restored_after_exception_during_adaptation(ids):
    model = tiny_causal_lm("llama", seed=0)
    ref, ref_out = _state(model), _out(model, ids)
    calls = []

    def bad_sampler(n, k, g):
        calls.append(1)
        return 0 if len(calls) < 3 else 10**6  # third step: out-of-range start

    with pytest.raises(ValueError, match="span sampler returned start"):
        with adapt(model, ids, QTTConfig(steps=5, span_len=8, lr=1e-1, span_sampler=bad_sampler)):
            pass
    assert _same(model, ref) and torch.equal(_out(model, ids), ref_out)
    assert all(p.requires_grad for p in model.parameters())


def test_two_requests_are_isolated():
    model = tiny_causal_lm("qwen3", seed=0)
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (1, 40), generator=g)
    b = torch.randint(0, 256, (1, 40), generator=g)
    with adapt(model, b, CFG) as s:
        alone = (list(s.losses), s.next_token_logits())
    with adapt(model, a, CFG) as s:
        s.next_token_logits()
    with adapt(model, b, CFG) as s:
        after = (list(s.losses), s.next_token_logits())
    assert alone[0] == after[0]
    assert torch.equal(alone[1], after[1])


def test_session_unusable_after_exit(ids):
    model = tiny_causal_lm("llama", seed=0)
    with adapt(model, ids, QTTConfig(steps=1, span_len=8)) as s:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        s.generate(1)
