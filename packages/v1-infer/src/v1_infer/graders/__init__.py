"""Graders: math answer extraction/equivalence (sympy) and sandboxed code execution."""

from .code import CodeResult, grade_code, run_program
from .math import canonical_answer, extract_answer, extract_boxed, grade_math, math_equal

__all__ = [
    "CodeResult",
    "canonical_answer",
    "extract_answer",
    "extract_boxed",
    "grade_code",
    "grade_math",
    "math_equal",
    "run_program",
]
