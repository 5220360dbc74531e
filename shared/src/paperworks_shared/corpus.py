"""An offline corpus of real English text that exists wherever CPython does.

Source: CPython's documentation topics (`pydoc_data.topics`, about 465k characters) plus the
docstrings of a fixed list of pure-Python standard-library modules. Documents are assigned to
train / validation / test by a hash of their name, so the split is deterministic and stable.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
import warnings
from functools import lru_cache

from datasets import Dataset, DatasetDict

#: Standard-library modules whose docstrings (module, classes, functions) join the corpus. `inspect` is
#: left out: libraries such as torch patch its functions on import, which changed the text by process.
DOCSTRING_MODULES = (
    "argparse",
    "asyncio.events",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "configparser",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email.message",
    "enum",
    "fractions",
    "ftplib",
    "functools",
    "gettext",
    "glob",
    "gzip",
    "heapq",
    "hmac",
    "http.client",
    "imaplib",
    "ipaddress",
    "json",
    "logging",
    "mailbox",
    "mimetypes",
    "multiprocessing.pool",
    "netrc",
    "numbers",
    "optparse",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "shlex",
    "shutil",
    "smtplib",
    "socketserver",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "trace",
    "traceback",
    "typing",
    "unittest.case",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "wave",
    "weakref",
    "zipfile",
)

SPLITS = {"train": 0.9, "validation": 0.05, "test": 0.05}
CHUNK_CHARS = 2000


def _clean(text: str) -> str:
    text = inspect.cleandoc(text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


@lru_cache(maxsize=1)
def corpus_documents() -> tuple[tuple[str, str], ...]:
    """All documents, cut into chunks of about CHUNK_CHARS characters, as (name, text) pairs in a fixed order."""
    from pydoc_data.topics import topics

    docs: list[tuple[str, str]] = [(f"topic:{k}", _clean(v)) for k, v in sorted(topics.items())]
    for modname in DOCSTRING_MODULES:
        try:
            mod = importlib.import_module(modname)
        except Exception:  # a module missing from a trimmed CPython simply contributes nothing
            continue
        parts = []
        with warnings.catch_warnings():  # touching deprecated attributes (typing.re, ...) warns
            warnings.simplefilter("ignore")
            if mod.__doc__:
                parts.append(mod.__doc__)
            for name, obj in sorted(vars(mod).items()):
                if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                    continue
                if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__doc__:
                    parts.append(f"{name}: {obj.__doc__}")
        text = "\n\n".join(_clean(p) for p in parts if p.strip())
        if len(text) > 200:
            docs.append((f"module:{modname}", text))
    return tuple(chunk for n, t in docs if len(t) >= 40 for chunk in _chunks(n, t))


def _chunks(name: str, text: str, target: int = CHUNK_CHARS) -> list[tuple[str, str]]:
    """Cut a document at paragraph boundaries into pieces of about `target` characters."""
    out, cur = [], []
    for para in text.split("\n\n"):
        cur.append(para)
        if sum(len(c) for c in cur) >= target:
            out.append("\n\n".join(cur))
            cur = []
    if cur:
        out.append("\n\n".join(cur))
    return [(f"{name}#{i}", c) for i, c in enumerate(out)]


def _split_of(name: str) -> str:
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < SPLITS["train"]:
        return "train"
    return "validation" if u < SPLITS["train"] + SPLITS["validation"] else "test"


@lru_cache(maxsize=1)
def load_corpus() -> DatasetDict:
    """The corpus as a `datasets.DatasetDict` with train / validation / test splits (columns: name, text)."""
    rows: dict[str, dict[str, list[str]]] = {s: {"name": [], "text": []} for s in SPLITS}
    for name, text in corpus_documents():
        rows[_split_of(name)]["name"].append(name)
        rows[_split_of(name)]["text"].append(text)
    return DatasetDict({s: Dataset.from_dict(r) for s, r in rows.items()})


def corpus_text(split: str = "train") -> str:
    """One split as a single string, documents separated by blank lines."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {tuple(SPLITS)}")
    return "\n\n".join(load_corpus()[split]["text"])


def corpus_fingerprint() -> str:
    """sha256 of all documents: changes when (and only when) the corpus text changes."""
    h = hashlib.sha256(f"python{sys.version_info[:2]}".encode())
    for name, text in corpus_documents():
        h.update(name.encode())
        h.update(text.encode())
    return h.hexdigest()[:16]


def corpus_stats() -> dict[str, int]:
    """Documents and characters per split."""
    ds = load_corpus()
    out = {}
    for s in SPLITS:
        out[f"{s}_docs"] = len(ds[s])
        out[f"{s}_chars"] = sum(len(t) for t in ds[s]["text"])
    out["total_chars"] = sum(out[f"{s}_chars"] for s in SPLITS)
    return out
