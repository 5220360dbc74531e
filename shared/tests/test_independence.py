"""Every package works alone: build its wheel, install it with paperworks-shared into an empty venv, import
it, ask its console script for --help and run its README's opening quickstart there (issue 20 acceptance).

Slow (a venv per package, prepared in parallel); versions are constrained to the workspace lock so
nothing new is downloaded when uv's cache already holds the locked wheels.
"""

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))


def _uv() -> list[str]:
    exe = shutil.which("uv")
    return [exe] if exe else [sys.executable, "-m", "uv"]


def _dist_name(member: Path) -> str:
    return tomllib.loads((member / "pyproject.toml").read_text())["project"]["name"]


def _run(cmd, **kw) -> tuple[int, str]:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return res.returncode, f"$ {' '.join(map(str, cmd))}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


def _check_member(member: Path, wheel_dir: Path, constraints: Path, base: Path) -> tuple[bool, str]:
    toml = tomllib.loads((member / "pyproject.toml").read_text())
    meta = toml["project"]
    name = meta["name"]
    module = toml["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"][0].split("/")[-1]
    script = next(iter(meta["scripts"]))
    shared_whl = next(wheel_dir.glob("paperworks_shared-*.whl"))
    pkg_whl = next(wheel_dir.glob(f"{name.replace('-', '_')}-*.whl"))
    venv = base / name
    py = venv / "bin" / "python"
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    steps = [
        [*_uv(), "venv", "-q", "--python", sys.executable, str(venv)],
        [
            *_uv(),
            "pip",
            "install",
            "-q",
            "--python",
            str(py),
            "-c",
            str(constraints),
            str(shared_whl),
            str(pkg_whl),
        ],
        [
            str(py),
            "-c",
            f"import {module}, importlib.metadata as m; assert m.version('{name}') == '{meta['version']}'",
        ],
        [str(venv / "bin" / script), "--help"],
    ]
    if (
        name == "paperworks-mast"
    ):  # issue 20: mast's core (taxonomy, parser, loaders, HTTP judge, agreement) without torch
        steps.append(
            [
                str(py),
                "-c",
                "import importlib.util, sys\n"
                "import mast, mast.taxonomy, mast.parse, mast.agreement, mast.annotate, mast.traces\n"
                "from mast.judges import OpenAICompatibleJudge\n"
                "assert importlib.util.find_spec('torch') is None, 'torch is installed'\n"
                "assert 'torch' not in sys.modules",
            ]
        )
    quick = _first_quickstart(member)
    if quick is not None:  # what a new user runs first, with only the declared dependencies installed
        steps.append([str(py), "-c", quick])
    run_env = {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    cwd = base / f"{name}-cwd"
    cwd.mkdir(exist_ok=True)
    log = []
    for cmd in steps:
        rc, out = _run(cmd, env=run_env, cwd=cwd, timeout=600)
        log.append(out)
        if rc != 0:
            return False, "\n".join(log)
    rc, listed = _run([*_uv(), "pip", "list", "--python", str(py), "--format", "freeze"], env=env)
    names = [_dist_name(m) for m in MEMBERS]
    others = [n for n in names if n != name and f"\n{n}==" in "\n" + listed.lower()]
    if others:
        return False, f"other paperworks packages were installed alongside {name}: {others}"
    return True, "\n".join(log)


def _first_quickstart(member: Path) -> str | None:
    """The README's first ```python block (the opening quickstart), or None if it has none."""
    m = re.search(r"^```python\n(.*?)^```", (member / "README.md").read_text(), flags=re.S | re.M)
    if m is None or m.group(1).lstrip().startswith("# not-a-quickstart"):
        return None
    return m.group(1)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheels")
    rc, log = _run([*_uv(), "build", "--all-packages", "--wheel", "-q", "-o", str(out)], cwd=ROOT)
    assert rc == 0, log
    res = subprocess.run(
        [
            *_uv(),
            "export",
            "--frozen",
            "--all-packages",
            "--all-extras",
            "--no-emit-workspace",
            "--no-hashes",
            "--format",
            "requirements-txt",
            "--no-header",
            "--no-annotate",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    constraints = out / "constraints.txt"
    constraints.write_text(res.stdout)
    base = tmp_path_factory.mktemp("venvs")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {m.name: pool.submit(_check_member, m, out, constraints, base) for m in MEMBERS}
        return {k: f.result() for k, f in futures.items()}


@pytest.mark.slow
@pytest.mark.acceptance
@pytest.mark.parametrize("member", [m.name for m in MEMBERS])
def test_package_installs_imports_and_runs_alone(member, results):
    ok, log = results[member]
    assert ok, log
