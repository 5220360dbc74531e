"""Issue 20.5: every "DESIGN.md §X" / "pitfall N" cited in the package's code exists in its DESIGN.md."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sections(text: str) -> set[str]:
    secs = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[ .]", text, flags=re.M))
    return secs | {s.split(".")[0] for s in secs}


def test_cited_sections_and_pitfalls_exist():
    design = (ROOT / "DESIGN.md").read_text()
    secs = _sections(design)
    pit = design[design.index("Pitfalls") :]
    pitfalls = set(re.findall(r"^(\d+)\. ", pit, flags=re.M))
    cited_secs, cited_pits = set(), set()
    for f in [*ROOT.joinpath("src").rglob("*.py"), ROOT / "README.md"]:
        for cite in re.findall(r"DESIGN\.md[^\]\n)]*", f.read_text()):
            cited_secs |= set(re.findall(r"§(\d+(?:\.\d+)?)", cite))
            for a, b in re.findall(r"pitfalls? (\d+)(?:-(\d+))?", cite):
                cited_pits |= {str(i) for i in range(int(a), int(b or a) + 1)}
    assert cited_secs or cited_pits  # the code does cite the design document
    assert not cited_secs - secs, f"cited sections missing from DESIGN.md: {sorted(cited_secs - secs)}"
    assert not cited_pits - pitfalls, f"cited pitfalls missing: {sorted(cited_pits - pitfalls)}"
