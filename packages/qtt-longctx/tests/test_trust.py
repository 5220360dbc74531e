"""Issue 17/18 regressions: inference-mode weights, generation position limit, the real-span FLOP account,
GQA span attention without a K/V copy, the CLI error convention, the sandbox cache and temp files."""

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from paperworks_shared.models import tiny_causal_lm
from qtt_longctx import QTTConfig, adapt, flops
from qtt_longctx.adapt import QTTSession

# --- inference-mode weights -------------------------------------------------------------------------


def test_inference_mode_weights_refused_before_anything_changes(ids):
    with torch.inference_mode():
        model = tiny_causal_lm("llama")
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(RuntimeError, match="created under torch.inference_mode") as err:
        with adapt(model, ids, QTTConfig(steps=1, span_len=8)):
            pass
    assert "Setting requires_grad" not in str(err.value)
    assert [p.requires_grad for p in model.parameters()] == flags  # left as it was
    assert not any(m._forward_hooks for m in model.modules())


def test_restoration_error_does_not_hide_the_real_error(ids, monkeypatch):
    model = tiny_causal_lm("llama")

    def broken_remove(self):
        raise OSError("restore failed")

    from qtt_longctx.delta import QueryDelta

    monkeypatch.setattr(QueryDelta, "remove", broken_remove)
    with pytest.raises(KeyError, match="body error") as err:
        with adapt(model, ids, QTTConfig(steps=1, span_len=8)):
            raise KeyError("body error")
    assert any("restore failed" in n for n in getattr(err.value, "__notes__", ["restore failed"]))
    # the other restorations still ran
    assert all(p.requires_grad for p in model.parameters())


# --- position limit in generate -----------------------------------------------------------------------


def test_generate_checks_the_position_limit():
    model = tiny_causal_lm("llama", max_position_embeddings=32)
    ids = torch.randint(0, 256, (1, 30), generator=torch.Generator().manual_seed(0))
    with adapt(model, ids, QTTConfig(steps=1, span_len=8)) as s:
        assert len(s.generate(3).tokens) == 3  # positions 29, 30, 31: the last ones that exist
        with pytest.raises(ValueError, match="max_position_embeddings"):
            s.generate(4)
        with pytest.raises(ValueError, match="max_position_embeddings"):
            s.generate(1, suffix_ids=[1, 2, 3])
        with pytest.raises(ValueError, match="max_new_tokens"):
            s.generate(0)


# --- the FLOP account --------------------------------------------------------------------------------


def test_account_charges_each_step_its_real_span_hand_count():
    s = flops.Shape(layers=2, hidden=4, mlp_ratio=1.0, kv_dim=2)
    # c_quad = 2*L*d = 16 per query-key pair; span projections (2+2r)*L*k*d^2 = 4*2*3*16 = 384
    # span (0, 3): pairs 1+2+3 = 6; span (5, 3): pairs 6+7+8 = 21; forward+backward = x2
    acc = flops.account(s, 20, spans=[(0, 3), (5, 3)], decode_tokens=[2, 4])
    assert acc.steps == 2 * (16 * 6 + 384) + 2 * (16 * 21 + 384) == 2400
    assert acc.steps_discarded_kv == 2 * (2 * 2 * 3 * 4 * 2) == 192
    # two generations, each from the 20-token context: 16*(2*20 + 1) + 192*2 and 16*(4*20 + 6) + 192*4
    assert acc.decode == 16 * 41 + 192 * 2 + 16 * 86 + 192 * 4
    assert acc.total == acc.prefill + 2400 + 192 + acc.decode
    # the planning mean under the uniform sampler is the exact mean over every admissible start
    T, k = 20, 3
    starts = range(0, T - 1 - k + 1)
    mean = sum(flops.span_step_flops(s, t, k) for t in starts) / len(starts)
    assert flops.account(s, T, 5, k, spans="uniform").steps == pytest.approx(5 * mean, rel=1e-12)
    assert flops.account(s, T, 5, k, spans="full").steps == 5 * flops.step_flops(s, k, T)
    with pytest.raises(ValueError, match="inside"):
        flops.account(s, 20, spans=[(17, 3)])


def test_session_account_uses_its_spans(ids):
    model = tiny_causal_lm("llama-gqa")
    with adapt(model, ids, QTTConfig(steps=3, span_len=8, lr=1e-3)) as sess:
        sess.generate(2)
        sess.generate(3)
        acc = sess.account()
    shape = flops.Shape.from_config(model.config)
    assert shape.kv_dim == 2 * 16
    want = sum(flops.span_step_flops(shape, t, k) for t, k in sess.spans)
    assert acc["steps"] == want
    assert acc["steps"] < 3 * flops.step_flops(shape, 8, ids.shape[1])  # not the whole-context charge
    assert acc["decode"] == flops.generation_flops(shape, 2, 48) + flops.generation_flops(shape, 3, 48)
    kv = model.config.num_key_value_heads * 16 * 47 * 4 * 2 * model.config.num_hidden_layers
    assert acc["memory"]["frozen_kv_bytes"] == kv
    longest = max(t + k for t, k in sess.spans)
    impl = model.config._attn_implementation
    per_layer_kv = model.config.num_key_value_heads * 16 * longest * 4
    want_transient = (
        2 * per_layer_kv if impl == "sdpa" else max(2 * 4 * k * (t + k) * 4 for t, k in sess.spans)
    )
    assert acc["memory"]["step_attention_transient_bytes"] == want_transient


# --- GQA: no repeated K/V, no K/V gradients ----------------------------------------------------------


def _allocations(fn) -> list[int]:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    sizes, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        e = stack.pop()
        stack.extend(e.children)
        if e.tag == torch._C._profiler._EventType.Allocation and e.extra_fields.alloc_size > 0:
            sizes.append(e.extra_fields.alloc_size)
    return sizes


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_gqa_span_step_does_not_copy_the_kv_window(attn):
    # 8 query heads over 2 K/V heads of dim 16; a 8-token span at the end of a 300-token context
    model = tiny_causal_lm(
        "llama-gqa", num_attention_heads=8, num_key_value_heads=2, head_dim=16, attn_implementation=attn
    )
    ids = torch.randint(0, 256, (1, 300), generator=torch.Generator().manual_seed(0))
    sess = QTTSession(model, ids, QTTConfig(steps=0, span_len=8)).run()
    try:
        kv_len = sess.cache.length
        start = kv_len - 8

        def step():
            with torch.enable_grad():
                sess.span_loss(start, 8).backward()

        step()
        sizes = _allocations(step)
        repeated = 8 * kv_len * 16 * 4  # one layer's K (or V) window expanded to all query heads, fp32
        assert sizes and max(sizes) < repeated, (max(sizes), repeated)
        for k, v in sess.cache.tensors():
            assert k.grad is None and v.grad is None and not k.requires_grad
        # and the span logits still equal the full forward
        with torch.no_grad():
            full = model(ids).logits
        torch.testing.assert_close(
            sess.span_logits(start, 8), full[:, start : start + 8], atol=1e-5, rtol=1e-5
        )
    finally:
        sess.close()


def test_grouped_attention_is_restored_after_the_span(ids):
    model = tiny_causal_lm("llama-gqa", attn_implementation="sdpa")
    with adapt(model, ids, QTTConfig(steps=1, span_len=8)) as s:
        assert model.config._attn_implementation == "sdpa"
        s.generate(1)
    assert model.config._attn_implementation == "sdpa"


# --- CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    """Any attempt to train or load a model fails the test: validation must come first."""
    import qtt_longctx.sandbox as sb
    from paperworks_shared import models

    def boom(*a, **k):
        raise AssertionError("work started before the arguments were validated")

    monkeypatch.setattr(sb, "sandbox_model", boom)
    monkeypatch.setattr(models, "load_model", boom)


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    afile = tmp / "afile"
    afile.write_text("x")
    corrupt = tmp / "corrupt_model"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    bad_data = tmp / "bad.jsonl"
    bad_data.write_text('{"context": "x"}\n')
    return [
        (["flops", "--context", "-5"], "--context"),
        (["flops", "--context", "abc"], "--context"),
        (["flops", "--steps", "-1"], "--steps"),
        (["flops", "--span", "0"], "--span"),
        (["flops", "--span", "100", "--context", "50"], "--span 100"),
        (["flops", "--config", str(tmp / "missing.json")], "--config"),
        (["flops", "--config", str(afile)], "cannot read a model config"),
        (["sandbox", "--lengths", "abc"], "--lengths"),
        (["sandbox", "--lengths", "16,-3"], "--lengths"),
        (["sandbox", "--lengths", "300"], "--lengths 300"),
        (["sandbox", "--methods", "in_context,magic"], "--methods"),
        (["sandbox", "--lr", "nan"], "--lr"),
        (["sandbox", "--lr", "-1"], "--lr"),
        (["sandbox", "--steps", "-2"], "--steps"),
        (["sandbox", "--per-length", "0"], "--per-length"),
        (["sandbox", "--scale", "huge"], "--scale"),
        (["sandbox", "--budget", "5000"], "positions"),
        (["sandbox", "--out", str(afile / "res")], "--out"),
        (["sandbox", "--grad-clip", "0"], "--grad-clip"),
        (["make-sandbox", "--lengths", "x", "--out", str(tmp / "t")], "--lengths"),
        (["make-sandbox", "--out", str(afile)], "--out"),
        (["make-sandbox", "--out", str(tmp / "tasks.jsonl")], "--out is a directory"),
        (["sandbox", "--out", str(tmp / "res.jsonl")], "--out is a directory"),
        (["sandbox", "--device", "tpu"], "--device"),
        (["sandbox", "--device", "cuda:x"], "--device"),
        (["sandbox", "--threads", "0"], "--threads"),
        (["run", "--model", str(tmp), "--data", str(afile), "--threads", "-2"], "--threads"),
        (["bench", "--scale", "huge"], "--scale"),
        (["run", "--model", str(tmp / "nope"), "--data", str(afile)], "--model"),
        (["run", "--model", str(tmp), "--data", str(tmp / "nope.jsonl")], "--data"),
        (["run", "--model", str(corrupt), "--data", str(afile)], "cannot"),
        (["run", "--model", str(corrupt), "--data", str(bad_data), "--schema", "qa"], "cannot read"),
        (["run", "--model", str(tmp), "--data", str(afile), "--limit", "-1"], "--limit"),
        (["run", "--model", str(tmp), "--data", str(afile), "--buckets", "5,x"], "--buckets"),
    ]


def test_cli_bad_input_table(tmp_path, capsys, no_training):
    from qtt_longctx.cli import main

    for argv, what in _bad_inputs(tmp_path):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (argv, rc, err)
        last = err.strip().splitlines()[-1]
        assert last.startswith("qtt") and "error:" in last and what in last, (argv, last)
        assert "Traceback" not in err


def test_cli_method_and_schema_lists_match_the_library():
    from qtt_longctx import cli
    from qtt_longctx.eval.loaders import SCHEMAS
    from qtt_longctx.methods import METHODS
    from qtt_longctx.sandbox.tasks import TASKS

    assert cli.METHOD_NAMES == METHODS and cli.SCHEMA_NAMES == SCHEMAS and cli.TASK_NAMES == TASKS


def test_sandbox_without_out_uses_a_private_temp_file(monkeypatch, capsys):
    import qtt_longctx.eval as ev
    import qtt_longctx.sandbox as sb
    from qtt_longctx import cli

    seen = []
    real_load = ev.load_local

    def spy_load(path, schema):
        seen.append(Path(path))
        return real_load(path, schema)

    monkeypatch.setattr(ev, "load_local", spy_load)
    monkeypatch.setattr(sb, "sandbox_model", lambda scale, **k: (torch.nn.Identity(), None, {}))
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: [])
    monkeypatch.setattr(cli, "_report", lambda *a, **k: None)
    for _ in range(2):
        assert cli.main(["sandbox", "--lengths", "4", "--per-length", "2", "--methods", "in_context"]) == 0
    assert len(seen) == 2 and seen[0] != seen[1]
    for p in seen:
        assert p.parent != Path(tempfile.gettempdir())  # a private folder, not a fixed name in /tmp
        assert not p.exists() and not p.parent.exists()  # removed afterwards


def test_make_sandbox_writes_atomically(tmp_path, capsys):
    from qtt_longctx.cli import main

    assert main(["make-sandbox", "--lengths", "4", "--per-length", "3", "--out", str(tmp_path)]) == 0
    rows = [json.loads(x) for x in (tmp_path / "tasks.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    assert sorted(os.listdir(tmp_path)) == ["tasks.jsonl"]  # no temp file left behind


# --- sandbox model cache -------------------------------------------------------------------------------


def test_sandbox_cache_goes_through_get_or_build(tmp_path, monkeypatch):
    from qtt_longctx.sandbox import SandboxSettings, train_sandbox_model
    from qtt_longctx.sandbox import model as sm

    monkeypatch.setenv("PAPERWORKS_CACHE", str(tmp_path))
    calls = []
    real = sm.get_or_build

    def spy(ns, key, build):
        calls.append(ns)
        return real(ns, key, build)

    monkeypatch.setattr(sm, "get_or_build", spy)
    s = SandboxSettings(steps=2, batch_tokens=64, max_pairs=4, layers=1, hidden=16, heads=2)
    m1, _, met1 = train_sandbox_model(s, progress=False)
    folders = list((tmp_path / "qtt-sandbox").iterdir())
    assert [f.name for f in folders if f.is_dir()] and all(
        (f / "DONE").is_file() for f in folders if f.is_dir()
    )
    monkeypatch.setattr(sm, "_train", lambda *a: (_ for _ in ()).throw(AssertionError("retrained")))
    m2, _, met2 = train_sandbox_model(s, progress=False)
    assert calls == ["qtt-sandbox", "qtt-sandbox"] and met1 == met2
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_cli_corrupt_model_folder_is_a_one_line_error(tmp_path, capsys):
    from qtt_longctx.cli import main

    data = tmp_path / "d.jsonl"
    assert main(["make-sandbox", "--lengths", "4", "--per-length", "1", "--out", str(tmp_path)]) == 0
    data = tmp_path / "tasks.jsonl"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{not json")
    capsys.readouterr()
    rc = main(["run", "--model", str(model_dir), "--data", str(data), "--schema", "sandbox"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "cannot load the model" in err[-1] and str(model_dir) in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_id_equal_to_vocab_size_is_rejected():
    """Boundary left open by a surviving mutant (>= vocab -> > vocab)."""
    model = tiny_causal_lm("llama")
    vocab = model.config.vocab_size
    with pytest.raises(ValueError, match="vocabulary"):
        with adapt(model, torch.full((1, 10), vocab)):
            pass
    with adapt(model, torch.full((1, 10), vocab - 1), QTTConfig(steps=0)):
        pass
