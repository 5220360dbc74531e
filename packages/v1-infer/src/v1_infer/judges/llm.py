"""LLM judges: render the paper's verification prompts (App. F), call any `TextGenerator` once per batch
(= one tournament round across all problems), and parse strictly.

Parse failures are returned as ``parsed=False`` outcomes (with the reason in ``raw``/``error``) and
counted in ``self.parse_failures``; the tournament's ``on_parse_error`` policy decides what they mean.
"""

from __future__ import annotations

from ..backends.base import SamplingParams, TextGenerator
from ..parsing import ParsedPair, ParsedPoint, parse_pairwise, parse_pointwise
from ..prompts import TASKS, render_pairwise, render_pointwise
from ..types import PairOutcome, PairQuery, PointOutcome, PointQuery


def _safe(parse, text, kind):
    """Parse one output; an unexpected exception fails this one call (a parse failure), not the batch."""
    try:
        return parse(text)
    except Exception as e:  # noqa: BLE001 - one odd reply must never fail a whole cross-problem round
        reason = f"unparseable output ({type(e).__name__})"
        return (
            ParsedPair(None, None, False, reason) if kind is ParsedPair else ParsedPoint(None, False, reason)
        )


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
        # judge temperature is unstated in the paper: default to the generation temperature (DESIGN.md §6.19)
        if temperature is None:
            temperature = 0.6 if task == "code" else 1.0
        self.generator, self.task = generator, task
        self.params = SamplingParams(
            n=1, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed
        )
        self.calls = 0
        self.parse_failures = 0
        self.backend_errors = 0  # failed calls (connect, HTTP, timeout, overflow): not parse failures
        self.failure_reasons: dict[str, int] = {}

    def _note_failure(self, reason: str) -> None:
        self.parse_failures += 1
        self.failure_reasons[reason] = self.failure_reasons.get(reason, 0) + 1

    @property
    def parse_failure_rate(self) -> float:
        """Parse failures over the calls that returned text (backend errors are not in either count)."""
        answered = self.calls - self.backend_errors
        return self.parse_failures / answered if answered else 0.0


class LLMPairwiseJudge(_LLMJudgeBase):
    """Pairwise self-verification: the same model rates slot A and slot B on 1..10."""

    def judge_pairs(self, queries: list[PairQuery]) -> list[PairOutcome]:
        prompts = [render_pairwise(q.problem, q.a.text, q.b.text, self.task) for q in queries]
        gens = self.generator.generate(prompts, self.params) if prompts else []
        out = []
        for samples in gens:
            g = samples[0]
            self.calls += 1
            if g.error:
                self.backend_errors += 1
                out.append(PairOutcome(None, None, False, "", g.prompt_tokens, g.completion_tokens, g.error))
                continue
            p = _safe(parse_pairwise, g.text, ParsedPair)
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
        for samples in gens:
            g = samples[0]
            self.calls += 1
            if g.error:
                self.backend_errors += 1
                out.append(PointOutcome(None, False, "", g.prompt_tokens, g.completion_tokens, g.error))
                continue
            p = _safe(parse_pointwise, g.text, ParsedPoint)
            if not p.ok:
                self._note_failure(p.reason)
            out.append(PointOutcome(p.rating, p.ok, g.text, g.prompt_tokens, g.completion_tokens))
        return out
