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
    # v3 per-mode shares (paper v3; DESIGN.md §0.5) -> FC totals 44.2 / 32.35 / 23.5, total 100.05
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


def test_design_md_has_every_section_the_code_cites():
    """Code comments cite "DESIGN.md §1.3" / "pitfall N"; each must exist in packages/mast/DESIGN.md (issue 20.5)."""
    import re
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[1]
    design = (pkg / "DESIGN.md").read_text()
    anchors = set(re.findall(r"^#+ (\d+(?:\.\d+)*)\b", design, flags=re.M))
    anchors |= set(re.findall(r"^(\d+\.\d+(?:\.\d+)?) ", design, flags=re.M))
    anchors |= set(re.findall(r"\b(5\.2\.\d)\b", design))
    pitfalls = re.search(r"^## 6\..*?(?=^## )", design, flags=re.M | re.S).group(0)
    anchors |= {f"6.{n}" for n in re.findall(r"^(\d+)\. \*\*", pitfalls, flags=re.M)}
    cited = set()
    for f in list((pkg / "src").rglob("*.py")) + [pkg / "README.md"]:
        for m in re.finditer(r"DESIGN\.md ([^)\n\"]*)", f.read_text()):
            cited |= {x.rstrip(".") for x in re.findall(r"§([\d.]+)", m.group(1))}
            cited |= {f"6.{n}" for n in re.findall(r"pitfall (\d+)", m.group(1))}
    assert cited, "no citations found"
    missing = sorted(c for c in cited if c not in anchors)
    assert not missing, f"DESIGN.md lacks cited section(s) {missing}"
