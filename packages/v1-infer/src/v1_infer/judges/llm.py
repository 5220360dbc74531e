"""LLM judges: render the paper's verification prompts (App. F), call any `TextGenerator` once per batch
(= one tournament round across all problems), and parse strictly.

Parse failures are returned as ``parsed=False`` outcomes (with the reason in ``raw``/``error``) and
counted in ``self.parse_failures``; the tournament's ``on_parse_error`` policy decides what they mean.
"""

from __future__ import annotations

from ..backends.base import SamplingParams, TextGenerator
from ..parsing import parse_pairwise, parse_pointwise
from ..prompts import TASKS, render_pairwise, render_pointwise
from ..types import PairOutcome, PairQuery, PointOutcome, PointQuery


class _LLMJudgeBase:
    def __init__(
        self,
        generator: TextGenerator,
        task: str = "math",
        *,
        temperature: float | None = None,
        top_p: float = 0.95,
        max_tokens: int = 1024,
        seed: int | None = None,
    ):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        # judge temperature is unstated in the paper: default to the generation temperature (notes §6.19)
        if temperature is None:
            temperature = 0.6 if task == "code" else 1.0
        self.generator, self.task = generator, task
        self.params = SamplingParams(
            n=1, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed
        )
        self.calls = 0
        self.parse_failures = 0
        self.failure_reasons: dict[str, int] = {}

    def _note_failure(self, reason: str) -> None:
        self.parse_failures += 1
        self.failure_reasons[reason] = self.failure_reasons.get(reason, 0) + 1

    @property
    def parse_failure_rate(self) -> float:
        return self.parse_failures / self.calls if self.calls else 0.0


class LLMPairwiseJudge(_LLMJudgeBase):
    """Pairwise self-verification: the same model rates slot A and slot B on 1..10."""

    def judge_pairs(self, queries: list[PairQuery]) -> list[PairOutcome]:
        prompts = [render_pairwise(q.problem, q.a.text, q.b.text, self.task) for q in queries]
        gens = self.generator.generate(prompts, self.params) if prompts else []
        out = []
        for g in gens:
            g = g[0]
            self.calls += 1
            if g.error:
                self._note_failure("backend error")
                out.append(PairOutcome(None, None, False, "", g.prompt_tokens, g.completion_tokens, g.error))
                continue
            p = parse_pairwise(g.text)
            if not p.ok:
                self._note_failure(p.reason)
            out.append(
                PairOutcome(p.rating_a, p.rating_b, p.ok, g.text, g.prompt_tokens, g.completion_tokens)
            )
        return out


class LLMPointwiseJudge(_LLMJudgeBase):
    """Pointwise self-verification baseline: one candidate, one ``<rating>`` tag."""

    def judge_points(self, queries: list[PointQuery]) -> list[PointOutcome]:
        prompts = [render_pointwise(q.problem, q.candidate.text, self.task) for q in queries]
        gens = self.generator.generate(prompts, self.params) if prompts else []
        out = []
        for g in gens:
            g = g[0]
            self.calls += 1
            if g.error:
                self._note_failure("backend error")
                out.append(PointOutcome(None, False, "", g.prompt_tokens, g.completion_tokens, g.error))
                continue
            p = parse_pointwise(g.text)
            if not p.ok:
                self._note_failure(p.reason)
            out.append(PointOutcome(p.rating, p.ok, g.text, g.prompt_tokens, g.completion_tokens))
        return out
