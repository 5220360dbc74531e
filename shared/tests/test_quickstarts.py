"""Every python block in the READMEs runs verbatim (issue 20): self-contained, offline, tiny models.

Each block runs in a fresh interpreter in an empty temporary folder (so it cannot lean on files of the
checkout) with the hub offline. A block that is meant as an excerpt, not a program, opens with the line
`# not-a-quickstart` and is skipped (there should be very few).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READMES = [
    ROOT / "README.md",
    ROOT / "shared" / "README.md",
    *sorted((ROOT / "packages").glob("*/README.md")),
]
SKIP_MARK = "# not-a-quickstart"
# Blocks not yet made self-contained (issue 20.3 is open for them): README name and block index.
# Each is skipped with that reason, so the list shrinks visibly as they are fixed.
PENDING: dict[str, set[int]] = {}


def _blocks():
    for readme in READMES:
        text = readme.read_text()
        for k, m in enumerate(re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)):
            code = m.group(1)
            if code.lstrip().startswith(SKIP_MARK):
                continue
            name = readme.parent.name
            marks = []
            if k in PENDING.get(name, ()) and not os.environ.get("PAPERWORKS_QUICKSTART_ALL"):
                marks.append(
                    pytest.mark.skip(reason="issue 20.3: this README block is not self-contained yet")
                )
            yield pytest.param(code, id=f"{name}-{k}", marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("code", list(_blocks()))
def test_readme_block_runs_verbatim(code, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    env.pop("PYTHONPATH", None)
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert res.returncode == 0, f"--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-5000:]}"
