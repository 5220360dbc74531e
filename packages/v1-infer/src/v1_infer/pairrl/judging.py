"""Framework-agnostic judge side of a PairRL step (DESIGN.md §1.5, §6.15): which judge prompts to build from
one step's solver rollouts, their verifier rewards, advantages, and the λ weighting as per-row scales.
Used by the TRL trainer; importable without TRL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .pairing import make_verification_pairs
from .rewards import pair_verifier_reward, point_verifier_reward


@dataclass(frozen=True)
class PairRLTask:
    """How to grade solver completions and how to ask / parse the judge, for one dataset.

    ``is_correct(row, completion)`` is the exact grader (row = the dataset example); ``pair_prompt(row,
    a, b)`` / ``point_prompt(row, x)`` build judge prompts (str or chat messages, like the dataset's
    ``prompt``); ``parse_pair(text) -> (rating_a, rating_b)`` and ``parse_point(text) -> rating`` return
    1..10 ratings or None on a parse failure (reward 0)."""

    is_correct: Callable[[dict, str], bool]
    pair_prompt: Callable[[dict, str, str], object]
    point_prompt: Callable[[dict, str], object]
    parse_pair: Callable[[str], tuple[float | None, float | None]]
    parse_point: Callable[[str], float | None]
    require_format: bool = False  # gen reward forced to 0 without <thinking>…</thinking> (paper §5)


@dataclass
class JudgeJob:
    """One judge prompt built from the step's solver rollouts: its group, the rollout indices and their
    correctness labels (one for "point", two for "pair")."""

    group: int
    rollouts: tuple[int, ...]
    labels: tuple[bool, ...]
    prompt: object


def build_judge_jobs(
    groups: list[list[tuple[dict, str, bool]]],
    mode: str,
    task: PairRLTask,
    judge_rollouts: int,
    rng: np.random.Generator,
) -> list[JudgeJob]:
    """Judge prompts from one step's solver rollouts: ``groups[g]`` = the G (row, completion, correct)
    triples of problem g. Pair mode: ``make_verification_pairs`` (C-I / C-C only); point mode: up to
    ``judge_rollouts`` random rollouts of problems with at least one correct rollout (same eligibility as
    pair mode, so both modes see the same problems)."""
    jobs: list[JudgeJob] = []
    for g, rollouts in enumerate(groups):
        ys = [c for _, _, c in rollouts]
        if mode == "pair":
            for a, b in make_verification_pairs(ys, judge_rollouts, rng=rng):
                row = rollouts[a][0]
                prompt = task.pair_prompt(row, rollouts[a][1], rollouts[b][1])
                jobs.append(JudgeJob(g, (a, b), (ys[a], ys[b]), prompt))
        elif mode == "point" and any(ys):
            for i in rng.permutation(len(rollouts))[:judge_rollouts]:
                i = int(i)
                jobs.append(JudgeJob(g, (i,), (ys[i],), task.point_prompt(rollouts[i][0], rollouts[i][1])))
    return jobs


def judge_rewards(
    jobs: list[JudgeJob], texts: list[str], task: PairRLTask, threshold: float | None, norm: str
) -> list[float]:
    """Thresholded verifier reward per judge completion (pairwise or pointwise by the job's arity)."""
    out = []
    for job, text in zip(jobs, texts, strict=True):
        if len(job.rollouts) == 2:
            ra, rb = task.parse_pair(text)
            out.append(pair_verifier_reward(ra, rb, *job.labels, threshold=threshold, norm=norm))
        else:
            out.append(
                point_verifier_reward(task.parse_point(text), job.labels[0], threshold=threshold, norm=norm)
            )
    return out


def judge_advantages(rewards: list[float], groups: list[int], baseline: str = "step") -> list[float]:
    """REINFORCE advantage of the judge rollouts: r − mean over the step ("step", DESIGN.md §1.5 "grouped
    across prompts") or over the same problem's judge rollouts ("problem", DESIGN.md §6.15)."""
    if not rewards:
        return []
    r = np.asarray(rewards, dtype=np.float64)
    if baseline == "step":
        return (r - r.mean()).tolist()
    if baseline == "problem":
        g = np.asarray(groups)
        return [float(r[i] - r[g == g[i]].mean()) for i in range(len(r))]
    raise ValueError(f"judge_baseline must be 'step' or 'problem', got {baseline!r}")


def loss_scales(n_gen_tokens: float, n_judge_tokens: float, lam: float, pooling: str) -> tuple[float, float]:
    """Multipliers for (solver, judge) advantages so that TRL's global token-mean over all rows equals
    ``mean_gen + λ·mean_judge`` ("separate") or a pooled token-mean with judge advantages × λ ("pooled")."""
    if pooling == "pooled" or n_judge_tokens == 0:
        return 1.0, lam
    if pooling != "separate":
        raise ValueError(f"pooling must be 'separate' or 'pooled', got {pooling!r}")
    total = n_gen_tokens + n_judge_tokens
    return total / max(n_gen_tokens, 1.0), lam * total / n_judge_tokens
