"""The sandbox model's training batches: random position offsets inside the RoPE range, answer weighting."""

import random

import pytest
import torch

from qtt_longctx.sandbox import SandboxSettings, train_sandbox_model, training_texts
from qtt_longctx.sandbox.model import _batch


def test_batches_have_offsets_and_answer_weights():
    s = SandboxSettings(batch_size=6, seq_len=64, max_positions=512)
    texts = training_texts(50, 8, seed=0)
    ids, w, pos = _batch(texts, s, random.Random(0))
    assert pos.max() < 512 and pos.min() >= 0
    assert len(set(pos[:, 0].tolist())) > 1  # rows start at different absolute positions
    assert torch.equal(pos - pos[:, :1], torch.arange(ids.shape[1]).expand_as(pos))
    for r in range(ids.shape[0]):
        for i in range(3, ids.shape[1]):
            if ids[r, i] == 256:  # padding
                assert w[r, i] == 0.0
            elif ids[r, i - 3] == ord("?"):
                assert w[r, i] == 1.0 and chr(ids[r, i]).isdigit()
            else:
                assert w[r, i] == pytest.approx(s.other_token_weight)


@pytest.mark.slow
def test_tiny_training_run_lowers_loss():
    s = SandboxSettings(steps=30, batch_size=4, seq_len=64, max_pairs=6, layers=1, hidden=32)
    model, tok, m = train_sandbox_model(s, progress=False, cache=False)
    assert m["train_loss_last"] < m["train_loss_first"]
    assert model.config.max_position_embeddings == s.max_positions
