"""Bad input raises clear errors, and the model is untouched afterwards."""

import pytest
import torch
from torch import nn

from paperworks_shared.models import tiny_causal_lm
from qtt_longctx import QTTConfig, adapt


def test_inference_mode_rejected(ids):
    model = tiny_causal_lm("llama")
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        with adapt(model, ids, QTTConfig(steps=1, span_len=8)):
            pass
    assert not any(m._forward_hooks for m in model.modules())


def test_model_without_q_proj_rejected(ids):
    class Fused(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = tiny_causal_lm("llama").config
            self.model = nn.Module()
            self.model.layers = nn.ModuleList([nn.Module()])
            self.model.layers[0].self_attn = nn.Module()
            self.model.layers[0].self_attn.qkv_proj = nn.Linear(4, 12)

    with pytest.raises(ValueError, match="q_proj"):
        with adapt(Fused(), ids):
            pass
    with pytest.raises(ValueError, match="model.layers"):
        with adapt(nn.Linear(2, 2), ids):
            pass


def test_context_longer_than_positions_rejected():
    model = tiny_causal_lm("llama", max_position_embeddings=32)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        with adapt(model, torch.zeros(1, 40, dtype=torch.long)):
            pass


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"steps": -1}, "steps"),
        ({"steps": 1.5}, "steps"),
        ({"lr": -1e-5}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": 100.0}, "lr"),
        ({"span_len": 0}, "span_len"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"mode": "all"}, "mode"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"layers": "some"}, "layers"),
        ({"span_sampler": "random"}, "span_sampler"),
    ],
)
def test_config_out_of_range(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        QTTConfig(**kwargs)


def test_bad_input_ids():
    model = tiny_causal_lm("llama")
    with pytest.raises(ValueError, match="one request"):
        with adapt(model, torch.zeros(2, 10, dtype=torch.long)):
            pass
    with pytest.raises(ValueError, match="at least 2"):
        with adapt(model, torch.zeros(1, 1, dtype=torch.long)):
            pass
    with pytest.raises(ValueError, match="vocabulary"):
        with adapt(model, torch.full((1, 10), 10_000)):
            pass
    with pytest.raises(ValueError, match="layers"):
        with adapt(model, torch.zeros(1, 10, dtype=torch.long), QTTConfig(layers=[7])):
            pass


def test_non_finite_loss_raises_and_restores(ids):
    model = tiny_causal_lm("llama")
    with torch.no_grad():
        model.lm_head.weight[3, 0] = float(
            "inf"
        )  # logits of token 3 become ±inf -> the span loss is not finite
    ref = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match="span loss"):
        with adapt(model, ids, QTTConfig(steps=3, span_len=16, lr=1e-3)):
            pass
    assert all(torch.equal(p, ref[n]) for n, p in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


def test_min_context_skips_adaptation(ids):
    model = tiny_causal_lm("llama")
    with adapt(model, ids, QTTConfig(steps=5, span_len=8, min_context=1000)) as s:
        assert not s.adapted and s.losses == []
