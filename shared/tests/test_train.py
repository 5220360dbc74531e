import pytest
import torch

from paperworks_shared import train as train_mod
from paperworks_shared.train import TrainSettings, encode_text, train_tiny_lm

SMALL = TrainSettings(steps=30, seq_len=64, batch_size=8, lr=5e-3, warmup=5, eval_batches=2)


def test_loss_falls_and_cache_hit_skips_training(tmp_cache, monkeypatch):
    texts = ["the quick brown fox jumps over the lazy dog. " * 40]
    val = ["the lazy dog sleeps while the quick brown fox jumps. " * 10]
    first = train_tiny_lm("llama", settings=SMALL, train_texts=texts, val_texts=val, progress=False)
    assert not first.cache_hit
    assert first.metrics["val_loss_after"] < first.metrics["val_loss_before"] - 1.0
    assert (first.path / "DONE").is_file() and first.path.is_relative_to(tmp_cache)

    # A cache hit must not train: make any optimiser construction explode.
    def boom(*a, **k):
        raise AssertionError("training ran despite a cache hit")

    monkeypatch.setattr(train_mod.torch.optim, "AdamW", boom)
    second = train_tiny_lm("llama", settings=SMALL, train_texts=texts, val_texts=val, progress=False)
    assert second.cache_hit and second.path == first.path
    assert second.metrics == first.metrics
    for (n1, p1), (n2, p2) in zip(first.model.named_parameters(), second.model.named_parameters()):
        assert n1 == n2 and p1.equal(p2)

    # A different key (other data) misses the cache.
    with pytest.raises(AssertionError, match="training ran"):
        train_tiny_lm("llama", settings=SMALL, train_texts=texts + ["x" * 200], val_texts=val, progress=False)


def test_encode_text_is_utf8_bytes():
    assert encode_text("aé").tolist() == [97, 195, 169]


def test_bad_settings_and_short_text_are_clear_errors(tmp_cache):
    with pytest.raises(ValueError, match="invalid training settings"):
        TrainSettings(steps=0)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        train_tiny_lm(
            "llama", settings=SMALL, train_texts=["tiny"], val_texts=["tiny"], progress=False, cache=False
        )


def test_save_trained_is_atomic_and_reloadable(tmp_cache, monkeypatch):
    from paperworks_shared.cache import cache_dir, is_complete
    from paperworks_shared.models import load_model, tiny_causal_lm

    model = tiny_causal_lm("llama", seed=0)
    path = cache_dir("unit", {"k": 1})
    # a crash while saving leaves no folder that counts as complete (and no half-written final folder)
    with monkeypatch.context() as m:
        m.setattr(train_mod, "save_model", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
        with pytest.raises(OSError, match="disk full"):
            train_mod.save_trained(model, path, {"loss": 1.0}, {"k": 1})
    assert not is_complete(path) and not path.exists()
    train_mod.save_trained(model, path, {"loss": 1.0}, {"k": 1})
    assert is_complete(path) and not path.with_name(path.name + ".tmp").exists()
    loaded, _ = load_model(path)
    for (n, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert n and torch.equal(p, q), n


def test_first_call_says_it_trains_and_where_it_caches(tmp_cache, capsys):
    texts = ["a b c d e f g. " * 30]
    first = train_tiny_lm("llama", settings=SMALL, train_texts=texts, val_texts=texts, progress=True)
    err = capsys.readouterr().err
    assert "training it now" in err and str(first.path) in err
    again = train_tiny_lm("llama", settings=SMALL, train_texts=texts, val_texts=texts, progress=True)
    assert again.cache_hit and "training it now" not in capsys.readouterr().err
