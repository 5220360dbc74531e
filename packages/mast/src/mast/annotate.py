"""The `Annotator`: sanitize -> budget -> render -> call -> parse -> cache -> record (DESIGN.md §7.3).

Every input trace ends as an `Annotation`: labelled, or with ``error`` set (labels all ``None``) --
never dropped, never silently "no".
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paperworks_shared.files import atomic_write_text

from .budget import ON_OVERFLOW, TraceTooLongError, char_estimate, fit_trace
from .cache import CompletionCache, cache_key
from .judges.base import Completion, Judge, JudgeParams
from .parse import ParsedAnnotation, parse_judge_output
from .prompts import LAYOUTS, PromptPack, answer_schema, render
from .taxonomy import MAST_V3, TaxonomyVersion
from .traces.sanitize import sanitize_trace
from .traces.schema import Trace


@dataclass
class Annotation:
    """The record for one trace: labels plus everything needed to reproduce and audit them."""

    trace_id: str
    labels: dict[str, bool | None]
    task_completed: bool | None = None
    summary: str = ""
    evidence: dict[str, str] = field(default_factory=dict)
    raw_response: list[str] = field(default_factory=list)
    parse_issues: list[str] = field(default_factory=list)
    judge: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    latency_s: float = 0.0
    judge_latency_s: float = 0.0
    truncated: bool = False
    n_chunks: int = 1
    overflow_action: str = "fits"
    cache_hit: bool = False
    error: str | None = None
    sanitize: dict[str, Any] = field(default_factory=dict)
    mas_name: str = ""
    llm_name: str = ""
    benchmark: str = ""
    created_at: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Annotation:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def save_annotations(anns: Sequence[Annotation], path) -> Path:
    """Write annotations as JSONL atomically (temp file + rename: never a half-written file)."""
    p = Path(path)
    atomic_write_text(p, "".join(json.dumps(a.to_dict(), ensure_ascii=False) + "\n" for a in anns))
    return p


def load_annotations(path) -> list[Annotation]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(Annotation.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"{path}:{n}: not an annotation record ({e})") from e
    return out


def _vote(values: list[bool | None]) -> tuple[bool | None, bool]:
    """Majority over samples (None ignored); returns (value, tie?)."""
    got = [v for v in values if v is not None]
    if not got:
        return None, False
    yes = sum(got)
    if yes * 2 == len(got):
        return None, True
    return yes * 2 > len(got), False


def _or(values: list[bool | None]) -> bool | None:
    """OR over chunks: True if any True; False only if all False; else None."""
    if any(v is True for v in values):
        return True
    if values and all(v is False for v in values):
        return False
    return None


class Annotator:
    """Annotate traces with the 14 MAST modes using any `Judge`.

    Parameters mirror the DESIGN.md §7.3. ``few_shot=True`` refuses to run with a prompt pack that has
    no examples (the silent zero-shot pitfall, DESIGN.md pitfall 3). ``on_overflow`` is ``error|truncate|chunk``.
    ``structured_output='auto'`` uses the JSON layout's schema as ``response_format`` when the judge
    supports it.
    """

    def __init__(
        self,
        judge: Judge,
        taxonomy: TaxonomyVersion = MAST_V3,
        layout: str = "cache_friendly",
        prompt_pack: PromptPack | None = None,
        few_shot: bool = False,
        concurrency: int = 8,
        n_samples: int = 1,
        temperature: float = 0.0,
        seed: int | None = 0,
        max_tokens: int = 1024,
        max_input_tokens: int = 120_000,
        on_overflow: str = "error",
        chunk_overlap_tokens: int = 0,
        token_counter: Callable[[str], int] = char_estimate,
        cache_dir=None,
        sanitize: bool = True,
        redact_secrets: bool = True,
        keep_fields: Sequence[str] = (),
        progress: bool = False,
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
        if on_overflow not in ON_OVERFLOW:
            raise ValueError(f"on_overflow must be one of {ON_OVERFLOW}, got {on_overflow!r}")
        if concurrency < 1 or n_samples < 1:
            raise ValueError("concurrency and n_samples must be >= 1")
        self.pack = prompt_pack or PromptPack.builtin(taxonomy)
        if few_shot and not self.pack.few_shot:
            raise ValueError(
                "few_shot=True but the prompt pack has no examples; load one with "
                "PromptPack.from_dir(...) (refusing to run zero-shot silently)"
            )
        self.judge, self.taxonomy, self.layout = judge, taxonomy, layout
        self.concurrency, self.n_samples = concurrency, n_samples
        self.temperature, self.seed, self.max_tokens = temperature, seed, max_tokens
        ctx_limit = getattr(judge, "max_context", None)  # a local model's context bounds the input budget
        if ctx_limit and max_input_tokens > ctx_limit - max_tokens:
            max_input_tokens = max(ctx_limit - max_tokens, 1)
        self.max_input_tokens, self.on_overflow = max_input_tokens, on_overflow
        self.chunk_overlap_tokens, self.count = chunk_overlap_tokens, token_counter
        self.cache = CompletionCache(cache_dir) if cache_dir else None
        self.sanitize, self.redact, self.keep_fields = sanitize, redact_secrets, frozenset(keep_fields)
        self.progress = progress
        self.n_judge_calls = 0  # calls that went to the judge (cache misses)
        # tokens of the calls that went to the judge in this Annotator's runs (cache hits cost nothing)
        self.usage_sent = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
        self.aborted: str | None = None
        self._raise_overflow = False

    # ------------------------------------------------------------------ helpers
    def _params(self, sample: int) -> JudgeParams:
        rf = None
        if self.layout == "json" and getattr(self.judge, "supports_structured_output", False):
            rf = {
                "type": "json_schema",
                "json_schema": {
                    "name": "mast_annotation",
                    "strict": True,
                    "schema": answer_schema(self.taxonomy),
                },
            }
        seed = None if self.seed is None else self.seed + sample
        return JudgeParams(self.temperature, seed, self.max_tokens, rf)

    def _judge_info(self, rendered) -> dict:
        return {
            "model": self.judge.model,
            "endpoint": self.judge.endpoint,
            "prompt_version": rendered.prompt_version,
            "prompt_sha256": rendered.prompt_sha256,
            "layout": self.layout,
            "pack": self.pack.name,
            "pack_sha256": self.pack.sha256,
            "taxonomy": self.taxonomy.name,
            "params": {
                "temperature": self.temperature,
                "seed": self.seed,
                "max_tokens": self.max_tokens,
                "n_samples": self.n_samples,
                "max_input_tokens": self.max_input_tokens,
                "on_overflow": self.on_overflow,
            },
        }

    async def _call(self, sem: asyncio.Semaphore, messages, params: JudgeParams, key: str):
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                known = Completion.__dataclass_fields__
                return Completion(**{k: v for k, v in hit.items() if k in known}), True
        async with sem:
            self.n_judge_calls += 1
            comp = await self.judge.complete(messages, params)
        for k in self.usage_sent:
            self.usage_sent[k] += int(comp.usage.get(k, 0) or 0)
        if self.cache is not None:
            self.cache.put(key, asdict(comp))
        return comp, False

    async def _one(self, trace: Trace, sem: asyncio.Semaphore) -> Annotation:
        t0 = time.perf_counter()
        ann = Annotation(
            trace_id=trace.trace_id,
            labels={m: None for m in self.taxonomy.ids},
            mas_name=trace.mas_name,
            llm_name=trace.llm_name,
            benchmark=trace.benchmark,
            created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        try:
            if self.sanitize or self.redact:
                clean, rep = sanitize_trace(
                    trace, strip_leaks=self.sanitize, redact=self.redact, keep_fields=self.keep_fields
                )
                ann.sanitize = rep.to_dict()
            else:
                clean = trace
            text = clean.text()
            probe = render("", self.layout, self.pack, self.taxonomy)
            static_tokens = sum(self.count(str(m["content"])) for m in probe.messages)
            fit = fit_trace(
                text,
                self.max_input_tokens - static_tokens - 64,
                self.on_overflow,
                self.count,
                overlap_tokens=self.chunk_overlap_tokens,
            )
            ann.truncated, ann.n_chunks, ann.overflow_action = fit.truncated, len(fit.parts), fit.action
            if fit.truncated:
                ann.parse_issues.append(f"truncated:{fit.omitted_tokens}_tokens_omitted")
            per_chunk: list[list[ParsedAnnotation]] = []
            usage = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
            hits = []
            jobs = []
            for ci, part in enumerate(fit.parts):
                r = render(part, self.layout, self.pack, self.taxonomy, part=(ci + 1, len(fit.parts)))
                ann.judge = self._judge_info(r)
                for s in range(self.n_samples):
                    params = self._params(s)
                    key = cache_key(
                        model=self.judge.model,
                        endpoint_kind=type(self.judge).__name__,
                        prompt_version=r.prompt_version,
                        prompt_sha256=r.prompt_sha256,
                        params=params.to_dict(),
                        messages_sha=hashlib.sha256(json.dumps(r.messages).encode()).hexdigest(),
                        sample=s,
                    )
                    jobs.append((ci, self._call(sem, r.messages, params, key)))
            results = await asyncio.gather(*(j for _, j in jobs))
            per_chunk = [[] for _ in fit.parts]
            for (ci, _), (comp, hit) in zip(jobs, results):
                hits.append(hit)
                ann.judge_latency_s += 0.0 if hit else comp.latency_s
                for k in usage:
                    usage[k] += int(comp.usage.get(k, 0))
                ann.raw_response.append(comp.text)
                parsed = parse_judge_output(comp.text, self.taxonomy)
                per_chunk[ci].append(parsed)
                if len(fit.parts) > 1 or self.n_samples > 1:
                    ann.parse_issues += [f"chunk{ci + 1}:{i}" for i in parsed.issues]
                else:
                    ann.parse_issues += parsed.issues
            ann.usage, ann.cache_hit = usage, all(hits)
            chunk_labels = []
            for ci, samples in enumerate(per_chunk):
                lab = {}
                for m in self.taxonomy.ids:
                    v, tie = _vote([p.labels.get(m) for p in samples])
                    if tie:
                        ann.parse_issues.append(
                            f"tie:{m}" + (f":chunk{ci + 1}" if len(per_chunk) > 1 else "")
                        )
                    lab[m] = v
                chunk_labels.append(lab)
            ann.labels = {m: _or([cl[m] for cl in chunk_labels]) for m in self.taxonomy.ids}
            first = per_chunk[0][0]
            ann.summary = first.summary
            ann.task_completed = _vote([p.task_completed for c in per_chunk for p in c])[0]
            for c in per_chunk:
                for p in c:
                    for m, ev in p.evidence.items():
                        ann.evidence.setdefault(m, ev)
        except TraceTooLongError as e:
            ann.error = f"overflow: {e}"
            if self._raise_overflow:
                raise
        except Exception as e:  # recorded per trace, never dropped
            ann.error = f"{type(e).__name__}: {e}"
        ann.latency_s = time.perf_counter() - t0
        return ann

    # ------------------------------------------------------------------ public API
    async def aannotate(
        self,
        traces: Sequence[Trace],
        raise_on_overflow: bool = False,
        on_result: Callable[[Annotation], None] | None = None,
        max_consecutive_failures: int = 0,
    ) -> list[Annotation]:
        """Annotate concurrently (at most `concurrency` judge calls in flight); output order = input order.

        ``on_result(annotation)`` is called as each trace finishes (in completion order), e.g. to append
        it to a JSONL file so that a crash or Ctrl-C loses nothing that was finished. With
        ``max_consecutive_failures=k > 0``, k traces in a row failing with a judge error (server gone,
        retries exhausted) abort the run: traces not finished by then are returned with
        ``error="not attempted: ..."`` and are *not* passed to `on_result` (so a resume retries them);
        `aborted` says why."""
        ids = [t.trace_id for t in traces]
        if len(set(ids)) != len(ids):
            raise ValueError("trace_ids must be unique within one annotate() call")
        self._raise_overflow = raise_on_overflow
        self.aborted = None
        sem = asyncio.Semaphore(self.concurrency)

        async def indexed(i: int, t: Trace) -> tuple[int, Annotation]:
            return i, await self._one(t, sem)

        tasks = [asyncio.ensure_future(indexed(i, t)) for i, t in enumerate(traces)]
        out: list[Annotation | None] = [None] * len(traces)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(tasks), desc="annotate")
        failures = 0
        try:
            for f in asyncio.as_completed(tasks):
                i, ann = await f
                out[i] = ann
                if on_result is not None:
                    on_result(ann)
                if bar is not None:
                    bar.update(1)
                failures = failures + 1 if (ann.error or "").startswith("JudgeError") else 0
                if max_consecutive_failures and failures >= max_consecutive_failures:
                    self.aborted = (
                        f"aborted after {failures} traces in a row failed with a judge error "
                        f"(last: {ann.error})"
                    )
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if bar is not None:
                bar.close()
        for i, t in enumerate(traces):
            if out[i] is None:
                out[i] = Annotation(
                    trace_id=t.trace_id,
                    labels={m: None for m in self.taxonomy.ids},
                    mas_name=t.mas_name,
                    llm_name=t.llm_name,
                    benchmark=t.benchmark,
                    error=f"not attempted: {self.aborted}",
                )
        return [a for a in out if a is not None]

    def annotate(
        self,
        traces: Sequence[Trace],
        raise_on_overflow: bool = False,
        on_result: Callable[[Annotation], None] | None = None,
        max_consecutive_failures: int = 0,
    ) -> list[Annotation]:
        """Synchronous wrapper around `aannotate` (closes the judge's connections at the end)."""

        async def run():
            try:
                return await self.aannotate(traces, raise_on_overflow, on_result, max_consecutive_failures)
            finally:
                await self.judge.aclose()

        return asyncio.run(run())
