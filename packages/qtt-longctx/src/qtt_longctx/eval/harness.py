"""Run in-context / qTTT / thinking / self-consistency on a normalised dataset at one FLOP budget.

Per example and method: correctness (multiple choice: argmax over the choice letters' first tokens;
free-form: exact match after whitespace/case normalisation) and the needle attention mass (when the row
names a `needle` substring and the model runs eager attention). `summarize` groups by method and
context-length bucket.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..config import QTTConfig
from ..methods import METHODS, answer
from .loaders import LETTERS, format_prompt


@dataclass
class EvalResult:
    id: str
    method: str
    length: int
    correct: bool
    needle_mass: float
    prediction: str


def _encode(tokenizer, text: str, bos: bool) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offs = list(enc["input_ids"]), list(enc["offset_mapping"])
    if bos and tokenizer.bos_token_id is not None:
        ids, offs = [tokenizer.bos_token_id] + ids, [(0, 0)] + offs
    return ids, offs


def _needle_positions(offsets, prompt: str, needle: str) -> list[int]:
    if not needle:
        return []
    start = prompt.find(needle)
    if start < 0:
        return []
    end = start + len(needle)
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]


def _norm(s: str) -> str:
    return " ".join(s.strip().lower().split())


def evaluate(
    model,
    tokenizer,
    dataset,
    schema: str = "qa",
    methods: Sequence[str] = ("in_context", "qttt"),
    budget_tokens: int = 8192,
    config: QTTConfig | None = None,
    sc_samples: int = 4,
    answer_tokens: int = 16,
    add_bos: bool = True,
    measure_mass: bool = True,
    progress: bool = True,
    seed: int = 0,
    temperature: float = 0.7,
    top_k: int = 20,
    top_p: float = 0.8,
) -> list[EvalResult]:
    """Evaluate `methods` on every row; returns one `EvalResult` per (row, method).

    `temperature`, `top_k`, `top_p` are the sampling settings of self-consistency (paper App. D
    non-thinking defaults 0.7 / 20 / 0.8); the other methods decode greedily."""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}; choose from {METHODS}")
    eager = model.config._attn_implementation == "eager"
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    out: list[EvalResult] = []
    for row in tqdm(dataset, desc="qtt eval", disable=not progress, leave=False):
        prompt = format_prompt(row, schema)
        ids, offs = _encode(tokenizer, prompt, add_bos)
        needle = _needle_positions(offs, prompt, row.get("needle", "")) if (measure_mass and eager) else []
        q_ids = (
            tokenizer(row["question"], add_special_tokens=False)["input_ids"]
            if schema == "sandbox"
            else (tokenizer("\nAnswer:", add_special_tokens=False)["input_ids"])
        )
        if row["choices"]:
            cands = [
                tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in LETTERS[: len(row["choices"])]
            ]
        elif schema == "sandbox" and len(row["answer"]) == 1:
            cands = [tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in "0123456789"]
        else:
            cands = None
        x = torch.tensor([ids])
        for method in methods:
            a = answer(
                model,
                x,
                method,
                budget_tokens=budget_tokens,
                config=config,
                candidates=cands,
                reask_ids=q_ids,
                needle_positions=needle or None,
                sc_samples=sc_samples,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                seed=seed,
                answer_tokens=answer_tokens,
                stop_tokens=newline,
            )
            if isinstance(a.prediction, int):  # scored over candidate tokens
                pred = tokenizer.decode([a.prediction])
                gold = row["answer"].strip()
                correct = pred.strip() == gold
            else:
                pred = tokenizer.decode(list(a.prediction))
                correct = _norm(pred) == _norm(row["answer"])
            out.append(EvalResult(row["id"], method, len(ids), correct, a.needle_mass, pred))
    return out


def summarize(results: Sequence[EvalResult], length_buckets: Sequence[int] = ()) -> list[dict]:
    """Accuracy and mean needle mass per (method, length bucket)."""
    edges = sorted(length_buckets)

    def bucket(n: int) -> str:
        for e in edges:
            if n <= e:
                return f"<={e}"
        return f">{edges[-1]}" if edges else "all"

    groups: dict[tuple[str, str], list[EvalResult]] = defaultdict(list)
    for r in results:
        groups[(r.method, bucket(r.length))].append(r)
    rows = []
    for (method, b), rs in sorted(groups.items()):
        masses = [r.needle_mass for r in rs if r.needle_mass == r.needle_mass]
        rows.append(
            dict(
                method=method,
                bucket=b,
                n=len(rs),
                accuracy=sum(r.correct for r in rs) / len(rs),
                needle_mass=sum(masses) / len(masses) if masses else float("nan"),
            )
        )
    return rows
