import warnings

import pytest

from mast import taxonomy as tx


def test_v3_integrity():
    t = tx.get("mast-v3")
    assert len(t.modes) == 14
    assert [len(t.modes_in(c.id)) for c in t.categories] == [5, 6, 3]
    assert len(set(t.ids)) == 14
    assert t.by_id("FM-2.6").name == "Reasoning-action mismatch"
    with pytest.raises(KeyError, match="no mode"):
        t.by_id("2.7")
    with pytest.raises(ValueError, match="not a failure-mode ID"):
        tx.normalize_id("two point one")


def test_code_prompt_labels_all_resolve_to_same_ids():
    for mid, label in tx.CODE_PROMPT_LABELS.items():
        assert tx.resolve(label, source="prompt") == mid
    assert tx.resolve("Action-Reasoning Mismatch") == "2.6"
    assert tx.resolve("Reasoning-action mismatch") == "2.6"


def test_swapped_verification_semantics():
    # prompt: 3.3 = Weak Verification; definitions.txt: 3.2 = Weak Verification (swapped)
    assert tx.resolve("Weak Verification", source="prompt") == "3.3"
    with pytest.warns(UserWarning, match="swapped"):
        assert tx.resolve("Weak Verification", source="definitions.txt") == "3.2"
    with pytest.warns(UserWarning, match="swapped"):
        assert tx.resolve("No or Incorrect Verification", source="definitions.txt") == "3.3"
    assert tx.resolve("No or Incorrect Verification", source="prompt") == "3.2"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tx.resolve("3.2") == "3.2"


def test_unknown_name_raises():
    with pytest.raises(KeyError, match="unknown failure-mode name"):
        tx.resolve("Bad vibes")
    with pytest.raises(KeyError, match="unknown taxonomy version"):
        tx.get("masft-99")


def test_paper_shares_sum():
    # v3 per-mode shares (notes §1.1) -> FC totals 44.2 / 32.35 / 23.5, total 100.05
    shares = {
        "1.1": 11.8,
        "1.2": 1.5,
        "1.3": 15.7,
        "1.4": 2.8,
        "1.5": 12.4,
        "2.1": 2.2,
        "2.2": 6.8,
        "2.3": 7.4,
        "2.4": 0.85,
        "2.5": 1.9,
        "2.6": 13.2,
        "3.1": 6.2,
        "3.2": 8.2,
        "3.3": 9.1,
    }
    t = tx.MAST_V3
    fc = {c.id: round(sum(shares[m.id] for m in t.modes_in(c.id)), 2) for c in t.categories}
    assert fc == {"FC1": 44.2, "FC2": 32.35, "FC3": 23.5}
    assert round(sum(shares.values()), 2) == 100.05


def test_markdown_and_dict():
    md = tx.MAST_V3.to_markdown()
    assert "FM-3.3" in md and "Task Verification" in md
    assert len(tx.MAST_V3.to_dict()["modes"]) == 14
