"""Every package works alone: build its wheel, install it with paperworks-shared into an empty venv, import it.

Slow (a venv per package); versions are constrained to the workspace lock so nothing new is downloaded
when uv's cache already holds the locked wheels.
"""

import os
import shutil
import subprocess
import sys
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


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )
    return res


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheels")
    _run([*_uv(), "build", "--all-packages", "--wheel", "-o", str(out)], cwd=ROOT)
    constraints = out / "constraints.txt"
    res = _run(
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
    )
    constraints.write_text(res.stdout)
    return out, constraints


@pytest.mark.slow
@pytest.mark.parametrize("member", MEMBERS, ids=[m.name for m in MEMBERS])
def test_package_installs_and_imports_alone(member, wheels, tmp_path):
    wheel_dir, constraints = wheels
    meta = tomllib.loads((member / "pyproject.toml").read_text())["project"]
    name = meta["name"]
    module = meta["scripts"][name].split(":")[0].split(".")[0]
    norm = name.replace("-", "_")
    shared_whl = next(wheel_dir.glob("paperworks_shared-*.whl"))
    pkg_whl = next(wheel_dir.glob(f"{norm}-*.whl"))
    venv = tmp_path / "venv"
    _run([*_uv(), "venv", "-q", "--python", sys.executable, str(venv)])
    py = venv / "bin" / "python"
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    _run(
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
        env=env,
    )
    res = _run(
        [
            str(py),
            "-c",
            f"import {module}, importlib.metadata as m; print({module}.__name__, m.version('{name}'))",
        ]
    )
    assert res.stdout.split() == [module, meta["version"]]
    # no other paperworks package came along
    listed = _run([*_uv(), "pip", "list", "--python", str(py), "--format", "freeze"], env=env).stdout.lower()
    others = {m.name for m in MEMBERS} - {name}
    assert not [o for o in others if f"{o}==" in listed], listed
    # the console script explains itself
    script = venv / "bin" / name
    assert script.exists(), f"console script {name} not installed"
    helped = _run([str(script), "--help"])
    assert "usage" in helped.stdout.lower()
