"""Synthetic long-context tasks (DESIGN.md §1.7, §3.5): the needle stays fixed, only the haystack grows.

Every example is a dict ``{task, n_pairs, context, question, answer, needle_start, needle_end}``; the
prompt is ``context + question`` and the gold answer a single character. ``needle_start/end`` are the
character (= byte = token) offsets of the record the answer comes from, for needle attention mass.

Records are ``<key><value>`` (``ab7``), in-context queries ``?ab7`` and the question ``?ab`` — the
value follows the key directly, so retrieval is an induction-style copy; keys sharing their last letter
are the near-duplicates a one-token match confuses.

* ``kv`` — key-value retrieval with near-duplicate distractors: two-letter keys over a 16-letter
  alphabet, so a random distractor shares one letter with the needle key with high probability
  (partial-match distractors, Lemma 2.2's "≥ m keys within Δ of the needle"). A fraction of the keys is
  re-queried inside the context (``?ab7 ``), the in-context self-supervision that qTTT's next-token loss
  can use (DESIGN.md §1.7, §3.4).
* ``txlog`` — transaction-log / variable tracking: accounts are written repeatedly; the question asks
  for the *latest* value (recency under distractors of the same key).
* ``multihop`` — records either store a digit or point to another key (``abcd``); the question asks a
  pointer key, answer = the digit of its target (two hops).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import datasets

ALPHABET = "abcdefghijklmnop"
DIGITS = "0123456789"
TASKS = ("kv", "txlog", "multihop")


def _keys(rng: random.Random, n: int) -> list[str]:
    allk = [a + b for a in ALPHABET for b in ALPHABET]
    if n > len(allk):
        raise ValueError(f"at most {len(allk)} distinct keys, asked for {n}")
    return rng.sample(allk, n)


def _kv(rng: random.Random, n: int, requery_frac: float) -> dict:
    keys = _keys(rng, n)
    vals = [rng.choice(DIGITS) for _ in keys]
    parts, pos, spans = [], 0, {}
    for i, (k, v) in enumerate(zip(keys, vals)):
        rec = f"{k}{v} "
        spans[k] = (pos, pos + len(rec) - 1)
        parts.append(rec)
        pos += len(rec)
        if i > 0 and rng.random() < requery_frac:  # re-query an earlier key inside the context
            j = rng.randrange(i)
            parts.append(f"?{keys[j]}{vals[j]} ")
            pos += len(parts[-1])
    q = rng.randrange(n)
    return dict(context="".join(parts), question=f"\n?{keys[q]}", answer=vals[q], span=spans[keys[q]])


def _txlog(rng: random.Random, n: int, requery_frac: float) -> dict:
    n_acc = max(2, n // 3)
    accs = _keys(rng, n_acc)
    last, parts, pos, spans = {}, [], 0, {}
    for _ in range(n):
        a, v = rng.choice(accs), rng.choice(DIGITS)
        rec = f"{a}{v} "
        last[a], spans[a] = v, (pos, pos + len(rec) - 1)
        parts.append(rec)
        pos += len(rec)
        if rng.random() < requery_frac:
            b = rng.choice(list(last))
            parts.append(f"?{b}{last[b]} ")
            pos += len(parts[-1])
    q = rng.choice(list(last))
    return dict(context="".join(parts), question=f"\n?{q}", answer=last[q], span=spans[q])


def _multihop(rng: random.Random, n: int, requery_frac: float) -> dict:
    keys = _keys(rng, n)
    n_ptr = max(1, n // 4)
    base, ptrs = keys[n_ptr:], keys[:n_ptr]
    vals = {k: rng.choice(DIGITS) for k in base}
    target = {p: rng.choice(base) for p in ptrs}
    recs = [(k, vals[k]) for k in base] + [(p, target[p]) for p in ptrs]
    rng.shuffle(recs)
    parts, pos, spans = [], 0, {}
    for k, v in recs:
        rec = f"{k}{v} "
        spans[k] = (pos, pos + len(rec) - 1)
        parts.append(rec)
        pos += len(rec)
        if rng.random() < requery_frac:
            j = rng.choice(base)
            parts.append(f"?{j}{vals[j]} ")
            pos += len(parts[-1])
    q = rng.choice(ptrs)
    return dict(context="".join(parts), question=f"\n?{q}", answer=vals[target[q]], span=spans[target[q]])


_MAKERS = {"kv": _kv, "txlog": _txlog, "multihop": _multihop}


def make_example(task: str, n_pairs: int, rng: random.Random, requery_frac: float = 0.2) -> dict:
    if task not in _MAKERS:
        raise ValueError(f"unknown sandbox task {task!r}; choose one of {TASKS}")
    if n_pairs < 2:
        raise ValueError("n_pairs must be >= 2")
    ex = _MAKERS[task](rng, n_pairs, requery_frac)
    s, e = ex.pop("span")
    return dict(task=task, n_pairs=n_pairs, needle_start=s, needle_end=e, **ex)


def sandbox_dataset(
    task: str = "kv",
    n_pairs: int | Sequence[int] = (16, 64, 256),
    per_length: int = 20,
    seed: int = 0,
    requery_frac: float = 0.2,
) -> datasets.Dataset:
    """`per_length` examples of `task` for every haystack size in `n_pairs`, as a `datasets.Dataset`."""
    sizes = [n_pairs] if isinstance(n_pairs, int) else list(n_pairs)
    rows = []
    for n in sizes:
        rng = random.Random(f"{task}-{n}-{seed}")
        rows += [make_example(task, n, rng, requery_frac) for _ in range(per_length)]
    return datasets.Dataset.from_list(rows)


def training_texts(n_examples: int, max_pairs: int, seed: int, requery_frac: float = 0.2) -> list[str]:
    """Short mixed-task documents ``context + question + answer`` for training the sandbox model."""
    rng = random.Random(f"train-{seed}")
    out = []
    for _ in range(n_examples):
        ex = make_example(rng.choice(TASKS), rng.randint(4, max_pairs), rng, requery_frac)
        out.append(ex["context"] + ex["question"] + ex["answer"] + "\n")
    return out
