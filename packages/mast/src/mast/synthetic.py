"""Synthetic judge responses, traces and label matrices for the benchmarks (DESIGN.md §3.4 E1-E3)."""

from __future__ import annotations

import json
import random

import numpy as np

from .taxonomy import CODE_PROMPT_LABELS, MAST_V3, STALE_EXAMPLE_IDS
from .traces.schema import Trace, Turn

IDS = MAST_V3.ids

# Per-trace prevalence on MAD-1242 (DESIGN.md §3.1, third-party counts / 1,242). FM-2.5 is 0 there (likely the
# parser bug); we use the paper's 1.9% share x 2.47 flags/trace = 4.7% instead.
MAD1242_PREVALENCE = {
    "1.1": 0.295,
    "1.2": 0.008,
    "1.3": 0.363,
    "1.4": 0.057,
    "1.5": 0.279,
    "2.1": 0.040,
    "2.2": 0.244,
    "2.3": 0.180,
    "2.4": 0.032,
    "2.5": 0.047,
    "2.6": 0.399,
    "3.1": 0.167,
    "3.2": 0.174,
    "3.3": 0.228,
}

RESPONSE_STYLES = (
    "terse",
    "label_echo",
    "label_echo_all_yes",
    "markdown_bold",
    "bullet_dash",
    "json",
    "summary_mentions_mode",
    "example_echo_first",
    "truncated_last_line",
)


def _yn(v: bool) -> str:
    return "yes" if v else "no"


def judge_response(style: str, truth: dict[str, bool], rng: random.Random) -> str:
    """One synthetic judge answer in `style` encoding `truth`."""
    if style == "label_echo_all_yes":
        truth = {m: True for m in IDS}
    head = "A. The agents attempted the task.\nB. no\nC.\n"
    if style == "terse":
        return head + "\n".join(f"{m} {_yn(truth[m])}" for m in IDS)
    if style in ("label_echo", "label_echo_all_yes"):
        return head + "\n".join(f"{m} {CODE_PROMPT_LABELS[m]}: {_yn(truth[m])}" for m in IDS)
    if style == "markdown_bold":
        return head + "\n".join(f"**{m}**: **{_yn(truth[m]).capitalize()}**" for m in IDS)
    if style == "bullet_dash":
        return head + "\n".join(f"- {m} — {_yn(truth[m])}" for m in IDS)
    if style == "json":
        return json.dumps(
            {
                "summary": "s",
                "task_completed": False,
                "failure_modes": {m: {"present": truth[m], "evidence": ""} for m in IDS},
            }
        )
    if style == "summary_mentions_mode":
        m0 = rng.choice(IDS)
        return f"A. The verifier etc. flagged {m0} but noted nothing conclusive.\nB. no\nC.\n" + "\n".join(
            f"{m} {_yn(truth[m])}" for m in IDS
        )
    if style == "example_echo_first":
        stale = "C.\n" + "\n".join(f"{m} no" for m in STALE_EXAMPLE_IDS)
        return (
            "The example answer was:\nA. x\nB. no\n"
            + stale
            + "\n\nMy answer:\n"
            + head
            + "\n".join(f"{m} {_yn(truth[m])}" for m in IDS)
        )
    if style == "truncated_last_line":
        lines = [f"{m} {CODE_PROMPT_LABELS[m]}: {_yn(truth[m])}" for m in IDS]
        lines[-1] = lines[-1][: len("3.3 Weak Verif")]
        return head + "\n".join(lines)
    raise ValueError(f"unknown response style {style!r}; choose one of {RESPONSE_STYLES}")


def random_truth(rng: random.Random, p: float = 0.3) -> dict[str, bool]:
    return {m: rng.random() < p for m in IDS}


def human_and_judge(n_traces: int, flip: float, rng: np.random.Generator, prevalence=MAD1242_PREVALENCE):
    """(human, judge) 0/1 matrices: human ~ Bernoulli(prevalence per mode), judge = human with i.i.d. flips."""
    p = np.array([prevalence[m] for m in IDS])
    human = (rng.random((n_traces, len(IDS))) < p).astype(float)
    judge = np.where(rng.random(human.shape) < flip, 1 - human, human)
    return human, judge


def synthetic_traces(
    n: int, turns: int = 8, chars_per_turn: int = 500, seed: int = 0, prefix: str = "s"
) -> list:
    """AG2-sized synthetic traces (different text per trace so fences and caches differ)."""
    rng = random.Random(seed)
    words = (
        "solve compute verify answer python result check step agent plan value error retry final "
        "assistant user code output equation"
    ).split()
    out = []
    for i in range(n):
        ts = []
        for j in range(turns):
            body = " ".join(rng.choice(words) for _ in range(chars_per_turn // 6))
            ts.append(Turn("assistant" if j % 2 else "mathproxyagent", f"[{i}.{j}] {body}"))
        out.append(Trace(f"{prefix}{i}", mas_name="AG2", benchmark="synthetic", turns=ts))
    return out


def filler_pack(def_chars: int = 13_162, ex_chars: int = 67_469, seed: int = 0):
    """A PromptPack with the *sizes* of the authors' long-form pack (definitions.txt / examples.txt) but
    filler text -- for prefix-cache arithmetic only, not for judging."""
    from .prompts import PromptPack

    rng = random.Random(seed)
    words = "the agent failed to verify output before termination and repeated the step again".split()

    def filler(n):
        s = []
        while sum(len(w) + 1 for w in s) < n:
            s.append(rng.choice(words))
        return " ".join(s)[:n]

    return PromptPack(filler(def_chars), filler(ex_chars), name="size-matched-filler")
