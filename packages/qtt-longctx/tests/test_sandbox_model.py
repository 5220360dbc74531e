"""The sandbox model's training batches (issue 19.3): whole documents, every evaluated distance trained,
random position offsets inside the RoPE range, answer weighting, the shared warm-up + cosine schedule."""

import math
import random
import re

import pytest
import torch

from qtt_longctx.bench import BENCH_RECORDS
from qtt_longctx.sandbox import SandboxSettings, sandbox_dataset, train_sandbox_model
from qtt_longctx.sandbox.model import PRESETS, _batch, _schedule, haystack_size

DOC = re.compile(rb"^([a-p]{2}\d |\?[a-p]{2}\d )+\n\?[a-p]{2}\d\n$")


def _rows(ids):
    for r in ids:
        yield bytes(t for t in r[1:].tolist() if t < 256)


def test_batches_are_whole_documents_with_offsets_and_answer_weights():
    s = SandboxSettings(batch_tokens=600, max_pairs=40, max_positions=512)
    rng = random.Random(0)
    for progress in (0.0, 0.5, 1.0):
        ids, w, pos = _batch(s, rng, progress)
        assert pos.max() < 512 and pos.min() >= 0
        assert torch.equal(pos - pos[:, :1], torch.arange(ids.shape[1]).expand_as(pos))
        for doc in _rows(ids):  # never truncated: each row ends with its question and answer
            assert DOC.match(doc), doc
        for r in range(ids.shape[0]):
            for i in range(3, ids.shape[1]):
                if ids[r, i] == 256:  # padding
                    assert w[r, i] == 0.0
                elif ids[r, i - 3] == ord("?"):
                    assert w[r, i] == 1.0 and chr(ids[r, i]).isdigit()
                else:
                    assert w[r, i] == pytest.approx(s.other_token_weight)
    ids, _, pos = _batch(s, random.Random(1))
    assert len(set(pos[:, 0].tolist())) > 1 or ids.shape[0] == 1  # rows start at different positions


def test_batch_respects_the_token_budget():
    s = SandboxSettings(batch_tokens=800, max_pairs=60)
    rng = random.Random(3)
    for _ in range(20):
        ids, _, _ = _batch(s, rng)
        real = int((ids != 256).sum())  # documents of one haystack size differ by a few re-queries
        assert ids.shape[0] == 1 or real <= 1.3 * s.batch_tokens
        assert real >= 0.5 * s.batch_tokens or ids.shape[0] == 1


def test_haystack_sizes_cover_the_range_with_a_curriculum():
    s = SandboxSettings(min_pairs=4, max_pairs=100, warmup_frac=0.2)
    rng = random.Random(0)
    late = [haystack_size(s, 0.9, rng) for _ in range(3000)]
    assert min(late) == 4 and max(late) >= 95 and max(late) <= 100
    # log-uniform: about half the draws below the geometric mean sqrt(4 * 100) = 20
    assert 0.4 < sum(n < 20 for n in late) / len(late) < 0.6
    assert {haystack_size(s, 0.0, rng) for _ in range(50)} == {4}  # curriculum starts short
    assert max(haystack_size(s, 0.1, rng) for _ in range(500)) <= 52  # halfway through the warm-up


@pytest.mark.parametrize("scale", ["smoke", "cpu", "full"])
def test_every_benchmark_distance_is_trained(scale):
    """The v4 model trained on rows cut at 144 tokens and was evaluated on ~960-token prompts: query-needle
    distances never seen in training. Each preset's longest training document must be at least as long
    as the benchmark's longest prompt (training documents re-query 50 % of keys, test prompts 20 %)."""
    s = PRESETS[scale]
    assert s.max_pairs >= max(BENCH_RECORDS[scale])
    ds = sandbox_dataset("kv", [max(BENCH_RECORDS[scale])], 20, seed=5)
    longest_eval = max(len(r["context"]) + len(r["question"]) + 1 for r in ds)
    rng = random.Random(0)
    train_lengths = [
        _batch(SandboxSettings(**{**s.__dict__, "min_pairs": s.max_pairs}), rng)[0].shape[1] for _ in range(5)
    ]
    assert min(train_lengths) >= longest_eval
    assert max(train_lengths) <= s.max_positions


def test_schedule_is_the_shared_warmup_cosine():
    from paperworks_shared.optim import warmup_cosine_factor

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = _schedule(opt, 100)
    seen = []
    for _ in range(100):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    want = [warmup_cosine_factor(i, 100, 5, 0.1) for i in range(100)]
    assert seen == pytest.approx(want)
    assert seen[0] == pytest.approx(0.2) and seen[-1] == pytest.approx(0.1, abs=1e-3)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="tasks"):
        SandboxSettings(tasks=("nope",))
    with pytest.raises(ValueError, match="min_pairs"):
        SandboxSettings(min_pairs=10, max_pairs=5)
    with pytest.raises(ValueError, match="max_positions"):
        _batch(SandboxSettings(min_pairs=200, max_pairs=200, max_positions=256), random.Random(0))


@pytest.mark.slow
def test_tiny_training_run_lowers_loss():
    s = SandboxSettings(steps=30, batch_tokens=256, max_pairs=6, layers=1, hidden=32)
    model, tok, m = train_sandbox_model(s, progress=False, cache=False)
    assert m["train_loss_last"] < m["train_loss_first"]
    assert model.config.max_position_embeddings == s.max_positions
    assert model.config._attn_implementation == "eager"
    assert math.isfinite(m["train_seconds"])
