import hashlib

from paperworks_shared.corpus import corpus_fingerprint, corpus_stats, corpus_text, load_corpus


def test_corpus_is_real_nontrivial_text():
    stats = corpus_stats()
    print("corpus size:", stats)
    assert stats["total_chars"] > 400_000  # pydoc topics alone are ~465k characters
    assert stats["validation_chars"] > 10_000 and stats["test_chars"] > 10_000
    text = corpus_text("train")
    for word in ("the", "function", "class", "return"):
        assert f" {word} " in text
    # English prose, not noise: spaces make up a plausible share of characters
    assert 0.08 < text.count(" ") / len(text) < 0.35


def test_corpus_is_deterministic_and_splits_are_disjoint():
    ds = load_corpus()
    names = {s: set(ds[s]["name"]) for s in ds}
    assert not names["train"] & names["validation"]
    assert not names["train"] & names["test"]
    assert not names["validation"] & names["test"]
    load_corpus.cache_clear()
    from paperworks_shared import corpus

    corpus.corpus_documents.cache_clear()
    ds2 = load_corpus()
    for s in ds:
        h1 = hashlib.sha256("\x00".join(ds[s]["text"]).encode()).hexdigest()
        h2 = hashlib.sha256("\x00".join(ds2[s]["text"]).encode()).hexdigest()
        assert h1 == h2
    assert corpus_fingerprint() == corpus_fingerprint()


def test_corpus_does_not_depend_on_what_else_is_imported():
    """The fingerprint keys the trained-model cache: it must be the same in a bare interpreter and in
    one that imported torch / transformers / datasets first (which patch some stdlib modules)."""
    import subprocess
    import sys

    code = "from paperworks_shared.corpus import corpus_fingerprint; print(corpus_fingerprint())"
    bare = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy = subprocess.run(
        [sys.executable, "-c", "import torch, transformers, datasets; " + code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert bare.strip() == heavy.strip() == corpus_fingerprint()
