"""`datasets` conversion for traces (Arrow-friendly: nested dicts are stored as JSON strings)."""

from __future__ import annotations

import json

from .schema import Trace, Turn


def to_hf_dataset(traces: list[Trace]):
    """A `datasets.Dataset` with one row per trace (turns as a list of structs)."""
    import datasets

    feats = datasets.Features(
        {
            "trace_id": datasets.Value("string"),
            "mas_name": datasets.Value("string"),
            "llm_name": datasets.Value("string"),
            "benchmark": datasets.Value("string"),
            "task": datasets.Value("string"),
            "turns": datasets.List(
                {k: datasets.Value("string") for k in ("speaker", "content", "role", "timestamp")}
            ),
            "raw": datasets.Value("string"),
            "metadata": datasets.Value("string"),
            "labels": datasets.Value("string"),
            "source_format": datasets.Value("string"),
        }
    )
    rows = []
    for t in traces:
        d = t.to_dict()
        d["metadata"] = json.dumps(d["metadata"], ensure_ascii=False, default=str)
        d["labels"] = json.dumps(d["labels"])
        rows.append(d)
    return datasets.Dataset.from_list(rows, features=feats)


def from_hf_dataset(ds) -> list[Trace]:
    """Inverse of `to_hf_dataset`."""
    out = []
    for r in ds:
        r = dict(r)
        r["metadata"] = json.loads(r["metadata"] or "{}")
        r["labels"] = json.loads(r["labels"]) if r["labels"] else None
        r["turns"] = [Turn(**t) for t in r["turns"]]
        out.append(Trace(**r))
    return out
