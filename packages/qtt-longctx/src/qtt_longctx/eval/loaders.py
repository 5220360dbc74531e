"""Load LongBench-v2 / ZeroSCROLLS-style local files into one normalised `datasets.Dataset`.

Normalised columns: ``id, context, question, choices (list[str], empty for free-form), answer (str),
needle (str, optional evidence substring for attention mass; "" when unknown)``.

Schemas:
* ``longbench_v2`` — fields ``context, question, choice_A..choice_D, answer`` (a letter), optional ``_id``;
* ``zeroscrolls`` — fields ``input`` (context, possibly with the question inside), ``output`` (answer),
  optional ``question``; free-form, exact match;
* ``qa`` — fields ``context, question, answer`` (or ``answers`` list), optional ``choices``;
* ``sandbox`` — rows written by `qtt make-sandbox` (``context, question, answer, needle_start/end``).
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

SCHEMAS = ("longbench_v2", "zeroscrolls", "qa", "sandbox")
LETTERS = "ABCDEFGH"


def _rows(path: Path) -> list[dict]:
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        return data if isinstance(data, list) else data["data"]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _require(row: dict, fields: tuple[str, ...], schema: str, i: int) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise ValueError(f"row {i} lacks {missing} required by schema {schema!r} (has {sorted(row)})")


def _normalise(row: dict, schema: str, i: int) -> dict:
    if schema == "longbench_v2":
        _require(row, ("context", "question", "answer"), schema, i)
        choices = [row[f"choice_{c}"] for c in LETTERS if f"choice_{c}" in row]
        return dict(
            id=str(row.get("_id", i)),
            context=row["context"],
            question=row["question"],
            choices=choices,
            answer=str(row["answer"]).strip(),
            needle=row.get("needle", ""),
        )
    if schema == "zeroscrolls":
        _require(row, ("input", "output"), schema, i)
        return dict(
            id=str(row.get("id", i)),
            context=row["input"],
            question=row.get("question", ""),
            choices=[],
            answer=str(row["output"]).strip(),
            needle=row.get("needle", ""),
        )
    if schema == "qa":
        _require(row, ("context", "question"), schema, i)
        ans = row.get("answer", (row.get("answers") or [None])[0])
        if ans is None:
            raise ValueError(f"row {i} has neither 'answer' nor 'answers'")
        return dict(
            id=str(row.get("id", i)),
            context=row["context"],
            question=row["question"],
            choices=list(row.get("choices", [])),
            answer=str(ans).strip(),
            needle=row.get("needle", ""),
        )
    _require(row, ("context", "question", "answer"), schema, i)
    needle = ""
    if "needle_start" in row:
        needle = row["context"][row["needle_start"] : row["needle_end"]]
    return dict(
        id=str(row.get("id", i)),
        context=row["context"],
        question=row["question"],
        choices=[],
        answer=str(row["answer"]),
        needle=needle,
        n_pairs=int(row.get("n_pairs", 0)),
        task=row.get("task", ""),
    )


def load_local(path: str | Path, schema: str = "qa") -> datasets.Dataset:
    """Read a local .jsonl/.json file of long-context tasks as a normalised `datasets.Dataset`."""
    if schema not in SCHEMAS:
        raise ValueError(f"unknown schema {schema!r}; choose one of {SCHEMAS}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    rows = [_normalise(r, schema, i) for i, r in enumerate(_rows(path))]
    if not rows:
        raise ValueError(f"{path} holds no rows")
    return datasets.Dataset.from_list(rows)


def format_prompt(row: dict, schema: str) -> str:
    """The prompt text. Sandbox rows use the trained raw format; others the paper's headers (App. D)."""
    if schema == "sandbox":
        return row["context"] + row["question"]
    parts = [f"[CONTEXT]\n{row['context']}\n[QUESTION]\n{row['question']}\n"]
    for letter, choice in zip(LETTERS, row["choices"]):
        parts.append(f"{letter}) {choice}\n")
    parts.append("Answer:" if not row["choices"] else "Answer: ")
    return "".join(parts)
