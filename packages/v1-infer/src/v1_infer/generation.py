"""Sample N candidate solutions per problem from any `TextGenerator` (paper App. C.1 / E)."""

from __future__ import annotations

from collections.abc import Sequence

from .backends.base import SamplingParams, TextGenerator
from .graders.math import extract_answer
from .parsing import extract_code
from .prompts import render_generation
from .types import Candidate


def sample_candidates(
    generator: TextGenerator,
    problems: Sequence[str],
    *,
    task: str = "math",
    n: int = 16,
    temperature: float | None = None,
    top_p: float = 0.95,
    max_tokens: int = 1024,
    seed: int | None = None,
) -> list[list[Candidate]]:
    """``n`` candidates per problem in one batched backend call. Defaults follow the paper: T = 1.0 for
    math, 0.6 for code, top-p 0.95. Each candidate's meta has ``answer`` (math) or ``code`` (code), the
    token counts and, when the backend failed, ``error``."""
    if temperature is None:
        temperature = 0.6 if task == "code" else 1.0
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    prompts = [render_generation(p, task) for p in problems]
    outs = generator.generate(prompts, params) if prompts else []
    result = []
    for gens in outs:
        cands = []
        for g in gens:
            meta = {
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                "finish_reason": g.finish_reason,
            }
            if g.error:
                meta["error"] = g.error
            if task == "math":
                meta["answer"] = extract_answer(g.text)
            else:
                meta["code"] = extract_code(g.text)
            cands.append(Candidate(g.text, meta))
        result.append(cands)
    return result
