"""Math answer extraction and equivalence (DESIGN.md §6.21): ``\\boxed{}`` first, a small LaTeX -> sympy
translator, exact symbolic comparison (no float tolerance for exact values, so 1/2004! != 1/2006!).

Handled: ``\\boxed``/``\\fbox`` with nested braces, ``\\frac``/``\\dfrac``/``\\tfrac``, ``\\sqrt[n]{}``,
``\\left``/``\\right``, ``\\cdot``/``\\times``, ``\\pi``, ``^{}``, ``\\text{}``, degrees, percent,
``$...$``, markdown bold (``**73**``), thousands separators, "x = 5", tuples and sets (element-wise,
order-insensitive for sets / "find all" lists only when both sides have the same elements).
"""

from __future__ import annotations

import re
from functools import lru_cache

import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

_TRANSFORMS = standard_transformations + (implicit_multiplication_application, convert_xor)


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), brace-matched; None if absent."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        m = list(re.finditer(r"\\boxed\s+([^\s$]+)", text))
        return m[-1].group(1) if m else None
    i = starts[-1]
    depth, k = 1, i
    while k < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        k += 1
    return text[i : k - 1] if depth == 0 else None


def extract_answer(text: str) -> str | None:
    """The final answer: the last boxed expression, else "answer is X" / "Answer: X", else the last number."""
    if not isinstance(text, str):
        return None
    from ..parsing import strip_thinking

    tail = strip_thinking(text, strict=False)
    boxed = extract_boxed(tail)
    if boxed is not None:
        return boxed.strip()
    m = list(re.finditer(r"(?:final answer|answer)\s*(?:is|:)\s*\$?([^\n$]+?)\$?\s*(?:\.|\n|$)", tail, re.I))
    if m:
        return m[-1].group(1).strip()
    nums = re.findall(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?", tail.replace("**", ""))
    return nums[-1] if nums else None


def _strip_braces(s: str) -> str:
    s = s.strip()
    while s.startswith("{") and s.endswith("}") and _balanced(s[1:-1]):
        s = s[1:-1].strip()
    return s


def _balanced(s: str) -> bool:
    d = 0
    for ch in s:
        d += {"{": 1, "}": -1}.get(ch, 0)
        if d < 0:
            return False
    return d == 0


def _group(s: str, i: int) -> tuple[str, int]:
    """The brace group starting at s[i] == '{' (or a single char), and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise ValueError("missing argument")
    if s[i] != "{":
        return s[i], i + 1
    d, k = 0, i
    while k < len(s):
        d += {"{": 1, "}": -1}.get(s[k], 0)
        if d == 0:
            return s[i + 1 : k], k + 1
        k += 1
    raise ValueError("unbalanced braces")


def normalize_latex(s: str) -> str:
    """Strip presentation (dollars, \\text, \\left, spaces, units of degrees/percent, 'x =')."""
    s = s.strip().strip("$").strip()
    s = s.replace("**", "")
    s = re.sub(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right|displaystyle|!|,|;|:|quad|qquad)", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\circ", "").replace("°", "")
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    s = re.sub(r"^\s*[a-zA-Z]\s*=\s*", "", s)  # "x = 5"
    s = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", s)  # 1,000 -> 1000 (not tuples like (1,2))
    s = s.rstrip(".").strip()
    return s


def _latex_to_sympy_str(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        if s.startswith("\\frac", i):
            a, i = _group(s, i + 5)
            b, i = _group(s, i)
            out.append(f"(({_latex_to_sympy_str(a)})/({_latex_to_sympy_str(b)}))")
        elif s.startswith("\\sqrt", i):
            i += 5
            root = None
            if i < len(s) and s[i] == "[":
                k = s.index("]", i)
                root, i = s[i + 1 : k], k + 1
            a, i = _group(s, i)
            inner = _latex_to_sympy_str(a)
            out.append(
                f"sqrt({inner})" if root is None else f"(({inner})**(1/({_latex_to_sympy_str(root)})))"
            )
        elif s.startswith("\\pi", i):
            out.append(" pi ")
            i += 3
        elif s.startswith("\\infty", i):
            out.append(" oo ")
            i += 6
        elif s.startswith("\\cdot", i) or s.startswith("\\times", i):
            out.append("*")
            i += 5 if s.startswith("\\cdot", i) else 6
        elif s[i] == "^":
            a, i = _group(s, i + 1)
            out.append(f"**({_latex_to_sympy_str(a)})")
        elif s[i] == "{":
            a, i = _group(s, i)
            out.append(f"({_latex_to_sympy_str(a)})")
        elif s[i] == "\\":
            m = re.match(r"\\([a-zA-Z]+)", s[i:])
            name = m.group(1) if m else ""
            out.append(f" {name} ")
            i += len(name) + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _split_top(s: str) -> list[str]:
    parts, d, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            d += 1
        elif ch in ")]}":
            d -= 1
        if ch == "," and d == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


@lru_cache(maxsize=4096)
def _to_sympy(s: str):
    expr = _latex_to_sympy_str(s)
    return parse_expr(expr, transformations=_TRANSFORMS, evaluate=True)


def canonical_answer(ans: str | None):
    """A hashable canonical form for majority voting: a simplified sympy string, else the normalised text."""
    if ans is None:
        return None
    s = normalize_latex(str(ans))
    try:
        return ("expr", sympy.srepr(sympy.nsimplify(sympy.simplify(_to_sympy(s)), rational=True)))
    except Exception:
        return ("text", s.replace(" ", "").lower())


def math_equal(a: str | None, b: str | None) -> bool:
    """True when two answers are the same value/expression/tuple/set (see module docstring)."""
    if a is None or b is None:
        return False
    na, nb = normalize_latex(str(a)), normalize_latex(str(b))
    if na.replace(" ", "").lower() == nb.replace(" ", "").lower():
        return True
    # tuples / sets / lists
    brackets = {"(": ")", "[": "]", "\\{": "\\}", "{": "}"}
    for sa, sb in ((na, nb),):
        pa, pb = _split_top(_unwrap(sa, brackets)), _split_top(_unwrap(sb, brackets))
        if len(pa) > 1 or len(pb) > 1:
            if len(pa) != len(pb):
                return False
            ordered = sa.startswith("(") and sb.startswith("(")
            if ordered:
                return all(_scalar_equal(x, y) for x, y in zip(pa, pb))
            remaining = list(pb)
            for x in pa:
                hit = next((y for y in remaining if _scalar_equal(x, y)), None)
                if hit is None:
                    return False
                remaining.remove(hit)
            return True
    return _scalar_equal(na, nb)


def _unwrap(s: str, brackets) -> str:
    for o, c in brackets.items():
        if s.startswith(o) and s.endswith(c):
            return s[len(o) : -len(c)]
    return s


def _scalar_equal(a: str, b: str) -> bool:
    if a.replace(" ", "").lower() == b.replace(" ", "").lower():
        return True
    try:
        ea, eb = _to_sympy(a), _to_sympy(b)
    except Exception:
        return False
    try:
        diff = sympy.simplify(ea - eb)
        if diff == 0:
            return True
        # floats written as decimals vs exact values: compare with a tight *relative* tolerance
        if ea.has(sympy.Float) or eb.has(sympy.Float):
            va, vb = complex(ea.evalf()), complex(eb.evalf())
            return abs(va - vb) <= 1e-9 * max(1.0, abs(va), abs(vb))
    except Exception:
        return False
    return False


def grade_math(response: str, reference: str) -> bool:
    """Is the final answer of ``response`` equivalent to ``reference``?"""
    return math_equal(extract_answer(response), reference)
