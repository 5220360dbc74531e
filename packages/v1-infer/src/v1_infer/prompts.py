"""Prompt templates of the paper (App. E generation, App. F verification), reconstructed from the
DESIGN.md §1.4 (wording verbatim where the notes quote it).

Template order is problem -> solution A -> solution B, so the problem prefix is shared by every call
of a problem (prefix caching, DESIGN.md §5.4).
"""

from __future__ import annotations

from .parsing import extract_code, strip_thinking

_OUTPUT_PAIR = (
    "## Output Format\n"
    "First, provide your step-by-step reasoning. Then, on separate new lines, provide your final ratings "
    "using the EXACT tags below. Add no other text after the tags.\n"
    "<rating_A>INTEGER_1_TO_10</rating_A>\n"
    "<rating_B>INTEGER_1_TO_10</rating_B>\n"
)
_OUTPUT_POINT = (
    "## Output Format\n"
    "First, provide your step-by-step reasoning. Then, on a separate new line, provide your final rating "
    "using the EXACT tag below. Add no other text after the tag.\n"
    "<rating>INTEGER_1_TO_10</rating>\n"
)

PAIRWISE_CODE = (
    "You are an expert code reviewer. Compare two solutions to a programming problem and rate their "
    "correctness.\n\n"
    "## Evaluation Guidelines\n"
    "- Analyze the problem's requirements and constraints.\n"
    "- Mentally trace each solution with test cases (including edge cases) to verify correctness.\n"
    "- If both solutions appear correct, prefer the more robust and fault-tolerant one.\n\n"
    "**Problem**\n{problem}\n\n**Solution A**\n{sol_a}\n\n**Solution B**\n{sol_b}\n\n"
    + _OUTPUT_PAIR
    + "\n## Rating Rules\nRate correctness on a 1-10 scale (10 = correct & robust, 5 = borderline, "
    "1 = incorrect). The higher rating wins. Equal ratings imply a tie. Please provide your analysis now."
)

PAIRWISE_MATH = (
    "You are an expert math contest grader. Compare two submissions and rate correctness based solely on "
    "the final answer.\n\n"
    "## Guidelines\n"
    "- Extract each submission's final answer. Use any provided reasoning only to help assess whether the "
    "stated final answer is trustworthy. Do not award credit for method quality or rigor.\n"
    "- Carefully analyze the problem and grade only the final answer.\n\n"
    "**Problem**\n{problem}\n\n**Submission A**\n{sol_a}\n\n**Submission B**\n{sol_b}\n\n"
    + _OUTPUT_PAIR
    + "\n## Rating Scale\n10 = certainly correct, 8 = very likely correct, 5 = uncertain/borderline, "
    "3 = likely incorrect, 1 = certainly incorrect. Higher rating wins. Equal ratings imply a tie."
)

POINTWISE_CODE = (
    "You are an expert code reviewer. Rate the correctness of a solution to a programming problem.\n\n"
    "## Evaluation Guidelines\n"
    "- Analyze the problem's requirements and constraints.\n"
    "- Mentally trace the solution with test cases (including edge cases) to verify correctness.\n\n"
    "**Problem**\n{problem}\n\n**Solution**\n{sol}\n\n"
    + _OUTPUT_POINT
    + "\n## Rating Rules\nRate correctness on a 1-10 scale (10 = correct & robust, 5 = borderline, "
    "1 = incorrect). Please provide your analysis now."
)

POINTWISE_MATH = (
    "You are an expert math contest grader. Rate the correctness of a submission based solely on the final "
    "answer.\n\n"
    "## Guidelines\n"
    "- Extract the submission's final answer. Use any provided reasoning only to help assess whether the "
    "stated final answer is trustworthy. Do not award credit for method quality or rigor.\n\n"
    "**Problem**\n{problem}\n\n**Submission**\n{sol}\n\n"
    + _OUTPUT_POINT
    + "\n## Rating Scale\n10 = certainly correct, 8 = very likely correct, 5 = uncertain/borderline, "
    "3 = likely incorrect, 1 = certainly incorrect."
)

GEN_CODE = (
    "**Problem** {problem}\n\n"
    "Think and reason step by step before coding the final solution for the problem above. Put your "
    "reasoning and any draft coding solutions between <thinking> ... </thinking> tags. After the reasoning "
    "(i.e. after the </thinking> tag), use the format provided in the problem above (code-block with "
    "backticks) to format your final code solution. Do not include any thinking within the code block.\n"
    "### Answer:"
)

GEN_MATH = "{problem}. Let's think step by step and output the final answer within \\boxed{{}}."

TASKS = ("math", "code")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def solution_view(text: str, task: str) -> str:
    """What the judge sees of a candidate (DESIGN.md §6.18): the final code block for code, the response
    without its thinking trace for math (falls back to the whole text when nothing is left)."""
    _check_task(task)
    if task == "code":
        code = extract_code(text)
        return code if code is not None else strip_thinking(text, strict=False)
    stripped = strip_thinking(text, strict=False)
    return stripped.strip() or text


def render_pairwise(problem: str, sol_a: str, sol_b: str, task: str) -> str:
    _check_task(task)
    tpl = PAIRWISE_CODE if task == "code" else PAIRWISE_MATH
    return tpl.format(problem=problem, sol_a=solution_view(sol_a, task), sol_b=solution_view(sol_b, task))


def render_pointwise(problem: str, sol: str, task: str) -> str:
    _check_task(task)
    tpl = POINTWISE_CODE if task == "code" else POINTWISE_MATH
    return tpl.format(problem=problem, sol=solution_view(sol, task))


def render_generation(problem: str, task: str) -> str:
    _check_task(task)
    return (GEN_CODE if task == "code" else GEN_MATH).format(problem=problem)
