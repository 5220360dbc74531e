"""Math equivalence and the sandboxed code runner."""

import pytest

from v1_infer.graders import (
    canonical_answer,
    extract_answer,
    extract_boxed,
    grade_code,
    grade_math,
    math_equal,
)


@pytest.mark.parametrize(
    "a,b",
    [
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac{3}{4}", "3/4"),
        ("\\sqrt{8}", "2\\sqrt{2}"),
        ("x = 5", "5"),
        ("\\text{13}", "13"),
        ("**73**", "73"),
        ("10^{\\circ}", "10"),
        ("1,000", "1000"),
        ("$\\pi/2$", "\\frac{\\pi}{2}"),
        ("\\{1, 2, 3\\}", "\\{3, 1, 2\\}"),
        ("(1, 2)", "(1,2)"),
        ("\\left(\\frac{1}{2}\\right)", "1/2"),
        ("2^{10}", "1024"),
        ("\\sqrt[3]{27}", "3"),
    ],
)
def test_equivalent_answers(a, b):
    assert math_equal(a, b)


@pytest.mark.parametrize(
    "a,b",
    [
        ("1/2004!", "1/2006!"),  # tiny values must not compare equal numerically (math-verify #14)
        ("(1, 2)", "(2, 1)"),  # tuples are ordered
        ("\\{1, 2\\}", "\\{1, 2, 3\\}"),  # "find all": a partial overlap is wrong (math-verify #47)
        ("3", "4"),
        (None, "4"),
        ("\\frac{1}{3}", "0.33"),
    ],
)
def test_different_answers(a, b):
    assert not math_equal(a, b)


def test_extraction():
    assert extract_boxed("a \\boxed{\\frac{1}{\\sqrt{2}}} b \\boxed{7}") == "7"
    assert extract_boxed("\\boxed{\\{1,\\{2\\}\\}}") == "\\{1,\\{2\\}\\}"
    assert extract_answer("<think>\\boxed{1}</think> so the answer is \\boxed{2}.") == "2"
    assert extract_answer("The answer is 42.") == "42"
    assert extract_answer("nothing numeric") is None
    assert grade_math("thus \\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}")
    assert canonical_answer("1/2") == canonical_answer("\\frac{2}{4}") != canonical_answer("1/3")


def test_code_runner_passes_and_fails():
    tests = [{"input": "3\n", "output": "6\n"}, {"input": "5", "output": "10"}]
    assert grade_code("print(int(input())*2)", tests).passed
    r = grade_code("print(int(input())+3)", tests, stop_on_fail=False)
    assert not r.passed and r.n_passed == 1
    assert grade_code("def f(x):\n    return x * x", [{"assert": "assert f(3) == 9"}]).passed
    assert not grade_code(None, tests).passed
    with pytest.raises(ValueError, match="needs"):
        grade_code("print(1)", [{"stdin": "x"}])


def test_code_runner_sandbox_limits():
    net = grade_code(
        "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\nprint(1)",
        [{"input": "", "output": "1"}],
    )
    assert not net.passed and "not allowed" in net.details[0]["stderr"]
    loop = grade_code("while True:\n    pass", [{"input": "", "output": "1"}], timeout=1.0)
    assert loop.details[0]["status"] == "timeout"
    mem = grade_code("x = bytearray(3 * 1024**3)\nprint(1)", [{"input": "", "output": "1"}], memory_mb=256)
    assert not mem.passed and "MemoryError" in mem.details[0]["stderr"]
    spawn = grade_code("import os\nos.system('echo hi')\nprint(1)", [{"input": "", "output": "1"}])
    assert not spawn.passed
