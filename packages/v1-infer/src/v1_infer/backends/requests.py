"""Request planning in front of any `TextGenerator`: per-request seeds and a judgment cache.

Seeds. By default no ``seed`` is sent at all (vLLM's CPU build crashes on seeded requests whose prompts
are chunked, and one fixed seed makes retries and repeated comparisons return identical text). With a
run seed (``--seed``), every request gets its *own* seed, derived by hashing (run seed, model, prompt,
sampling params, occurrence number): the k-th time the same prompt is asked in a run gets a different
seed than the (k-1)-th, and a re-run with the same run seed asks exactly the same requests.

Cache. With ``cache_path``, every answered request is appended (one fsync per batch) to a JSONL file
keyed by the same hash (model, prompt, params, occurrence, run seed); a re-run serves those from the
file and sends only what was never answered. Failed requests are never cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from .base import Generation, SamplingParams


def request_key(
    model: str, prompt: str, params: SamplingParams, occurrence: int, run_seed: int | None
) -> str:
    blob = json.dumps(
        {
            "model": model,
            "prompt": prompt,
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "occurrence": occurrence,
            "run_seed": run_seed,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def derived_seed(key: str) -> int:
    """A per-request seed in [0, 2**31) from a request key."""
    return int(key[:8], 16) & 0x7FFFFFFF


class JudgmentCache:
    """Append-only JSONL of answered requests: ``{"key": ..., "gens": [{text, ...}, ...]}`` per line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data: dict[str, list[Generation]] = {}
        if self.path.is_file():
            raw = self.path.read_bytes()
            end = raw.rfind(b"\n") + 1
            if end < len(raw):  # a torn last line (killed mid-write): cut it so appends stay valid
                with open(self.path, "r+b") as f:
                    f.truncate(end)
                raw = raw[:end]
            for k, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    self.data[rec["key"]] = [Generation(**g) for g in rec["gens"]]
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{self.path}:{k}: not a judgment-cache line ({e})") from None

    def get(self, key: str) -> list[Generation] | None:
        return self.data.get(key)

    def put_many(self, items: list[tuple[str, list[Generation]]]) -> None:
        if not items:
            return
        lines = []
        for key, gens in items:
            self.data[key] = gens
            gd = [dataclasses.asdict(g) for g in gens]
            lines.append(json.dumps({"key": key, "gens": gd}, ensure_ascii=False) + "\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())


class RequestPlanner:
    """A `TextGenerator` wrapper: per-request seeds from ``run_seed`` (None = no seed sent), an optional
    judgment cache, and counters (``sent`` requests, cache ``hits``)."""

    def __init__(
        self, inner, model: str, *, run_seed: int | None = None, cache_path: str | Path | None = None
    ):
        self.inner, self.model, self.run_seed = inner, model, run_seed
        self.cache = JudgmentCache(cache_path) if cache_path else None
        self._occ: Counter = Counter()
        self.sent = 0
        self.hits = 0
        # backends that take one SamplingParams per prompt (distinct seeds in one concurrent burst)
        self._per_prompt = getattr(inner, "accepts_param_list", False)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        keys, per = [], []
        for p in prompts:
            base = (p, params.n, params.temperature, params.top_p, params.max_tokens)
            occ = self._occ[base]
            self._occ[base] += 1
            key = request_key(self.model, p, params, occ, self.run_seed)
            keys.append(key)
            seed = None if self.run_seed is None else derived_seed(key)
            per.append(dataclasses.replace(params, seed=seed))
        out: list[list[Generation] | None] = [None] * len(prompts)
        miss = []
        for k, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache else None
            if hit is not None and len(hit) == params.n:
                out[k] = hit
                self.hits += 1
            else:
                miss.append(k)
        if miss:
            self.sent += len(miss)
            mp = [prompts[k] for k in miss]
            if self._per_prompt:
                gens = self.inner.generate(mp, [per[k] for k in miss])
            else:  # batched local engines take one params per call: one seed per batch
                seed = None
                if self.run_seed is not None:
                    seed = derived_seed(hashlib.sha256("".join(keys[k] for k in miss).encode()).hexdigest())
                gens = self.inner.generate(mp, dataclasses.replace(params, seed=seed))
            if len(gens) != len(miss):
                raise RuntimeError(f"backend returned {len(gens)} results for {len(miss)} prompts")
            fresh = []
            for k, g in zip(miss, gens):
                out[k] = g
                if self.cache is not None and g and all(x.error is None for x in g):
                    fresh.append((keys[k], g))
            if self.cache is not None:
                self.cache.put_many(fresh)
        return out  # type: ignore[return-value]
