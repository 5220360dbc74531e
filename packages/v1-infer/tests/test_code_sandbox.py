"""Issue 17 §2: the code grader passes only when every test assertion executed and held, inside a sandbox."""

import os
import time
import uuid

import pytest

from v1_infer.graders import code as code_mod
from v1_infer.graders import grade_code, run_program

SQUARE_TESTS = [{"assert": "assert f(3) == 9"}, {"assert": "assert f(-2) == 4\nassert f(0) == 0"}]
GOOD = "def f(x):\n    return x * x\n"


@pytest.fixture(params=["namespaces", "fallback"])
def mode(request, monkeypatch):
    """Every check runs with the unshare sandbox (where it works) and with the documented fallback."""
    if request.param == "namespaces":
        if not code_mod._unshare_works():
            pytest.skip("unshare -r -n -m does not work on this machine")
    else:
        monkeypatch.setattr(code_mod, "_unshare_works", lambda: False)
    return request.param


def test_correct_code_still_passes(mode):
    r = grade_code(GOOD, SQUARE_TESTS)
    assert r.passed and r.n_passed == 2
    assert grade_code("print(int(input())*2)", [{"input": "3\n", "output": "6\n"}]).passed


@pytest.mark.parametrize(
    "program",
    [
        "import sys\nsys.exit(0)\n" + GOOD,
        GOOD + "import sys\nsys.exit(0)\n",
        GOOD + "import os\nos._exit(0)\n",
        GOOD + "raise SystemExit\n",
        GOOD + "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(0)\n",
        GOOD + "print('0' * 32)\nimport sys\nsys.exit(0)\n",  # a fake nonce on stdout
        GOOD + "import os\nos.write(4, b'0' * 32)\nos.write(5, b'0' * 32)\nos._exit(0)\n",  # on the result fd
        "def f(x):\n    return 9\n",  # wrong on the second test
    ],
)
def test_programs_that_skip_or_fail_the_asserts_do_not_pass(mode, program):
    r = grade_code(program, SQUARE_TESTS, stop_on_fail=False)
    assert not r.passed, r.details
    assert r.n_passed <= 1


def test_ctypes_system_cannot_touch_files_outside(mode, tmp_path):
    target = f"/tmp/v1infer-pwned-{uuid.uuid4().hex}"
    prog = f"import ctypes\nctypes.CDLL(None).system(b'touch {target}')\n" + GOOD
    r = grade_code(prog, SQUARE_TESTS[:1])
    assert not os.path.exists(target)
    assert not r.passed and "not allowed" in r.details[0]["stderr"]
    # a plain write outside the working directory does not land either (read-only mounts / private /tmp)
    if mode == "namespaces":
        outside = tmp_path / "written.txt"
        r = run_program(f"open({str(outside)!r}, 'w').write('x')")
        assert r["status"] == "error" and not outside.exists()


def test_stdout_flood_is_bounded(mode):
    t0 = time.monotonic()
    r = run_program("import sys\nfor _ in range(2400):\n    sys.stdout.write('x' * 65536)\n", timeout=20)
    assert r["status"] == "output_limit"  # 153 MB were offered
    assert len(r["stdout"]) <= code_mod.DEFAULT_MAX_OUTPUT
    assert time.monotonic() - t0 < 15
    flood = grade_code("print('6' * 10_000_000)", [{"input": "", "output": "6"}], max_output_bytes=4096)
    assert not flood.passed and flood.details[0]["status"] == "output_limit"


def test_infinite_loop_times_out_and_kills_children(mode):
    r = grade_code("while True:\n    pass", SQUARE_TESTS[:1], timeout=1.0)
    assert not r.passed and r.details[0]["status"] == "timeout"


def test_network_is_blocked(mode):
    prog = "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\n" + GOOD
    r = grade_code(prog, SQUARE_TESTS[:1])
    assert not r.passed and "not allowed" in r.details[0]["stderr"]


def test_fresh_working_directory_and_clean_environment(mode):
    prog = (
        "import os, sys\n"
        "assert os.listdir('.') in ([], ['solution.py']), os.listdir('.')\n"
        "open('scratch.txt', 'w').write('x')\n"
        "assert set(os.environ) <= {'PATH', 'PYTHONHASHSEED', 'LANG', 'LC_CTYPE'}, sorted(os.environ)\n"
        + GOOD
    )
    assert grade_code(prog, SQUARE_TESTS[:1]).passed
    assert grade_code(prog, SQUARE_TESTS[:1]).passed  # the scratch file of the first run is gone


def test_file_size_limit():
    r = run_program("open('big', 'wb').write(b'x' * (64 << 20))")
    assert r["status"] == "error"
