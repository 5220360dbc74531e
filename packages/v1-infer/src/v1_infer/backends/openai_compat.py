"""Async client for any OpenAI-compatible server (vLLM, SGLang, ...): ``/v1/completions`` or
``/v1/chat/completions`` with bounded concurrency, per-request timeouts and retries with exponential
backoff (429, 5xx, timeouts, dropped connections and malformed JSON are retried; other 4xx are not).

A request that still fails after ``max_retries`` yields `Generation` objects with ``error`` set, so no
prompt is ever lost and callers can report per-problem errors. ``Retry-After`` (seconds) on 429/503 is
honoured (capped at ``max_backoff``). After ``abort_after`` requests in a row failed for good, the
server is presumed gone: requests not yet sent fail at once ("not sent") instead of each spending its
full retry schedule. A 400 that says the prompt is too long is reported as a context overflow.

``params`` may be one `SamplingParams` for every prompt or a list with one per prompt (distinct
per-request seeds, see `backends.requests.RequestPlanner`).
"""

from __future__ import annotations

import asyncio
import json
import random

import httpx

from .base import Generation, SamplingParams

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_OVERFLOW = ("maximum context length", "context length", "too long", "max_model_len", "max-model-len")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (numeric form; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return v if v >= 0 and v == v else None


def _is_overflow(status: int, text: str) -> bool:
    low = text.lower()
    return status == 400 and any(k in low for k in _OVERFLOW)


class OpenAICompatGenerator:
    """``base_url`` like "http://127.0.0.1:8000" (a trailing "/v1" is accepted). ``chat=True`` uses the chat
    endpoint with the prompt as a single user message."""

    accepts_param_list = True  # generate() takes one SamplingParams per prompt too

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "EMPTY",
        chat: bool = False,
        concurrency: int = 64,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        abort_after: int = 8,
        extra_body: dict | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[:-3]
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url, self.model, self.api_key, self.chat = base, model, api_key, chat
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries
        self.backoff, self.max_backoff, self.transport = backoff, max_backoff, transport
        self.abort_after = int(abort_after)
        self.extra_body = dict(extra_body or {})  # merged into every request (e.g. vLLM structured_outputs)
        self.stats = {"requests": 0, "retries": 0, "failures": 0, "not_sent": 0}
        self._fail_run = 0  # requests in a row that failed for good
        self._dead: str | None = None

    def _final_failure(self, err: str, n: int) -> list[Generation]:
        self.stats["failures"] += 1
        self._fail_run += 1
        if self.abort_after and self._fail_run >= self.abort_after and self._dead is None:
            self._dead = f"server presumed down after {self._fail_run} failed requests in a row: {err}"
        return [Generation("", error=err) for _ in range(n)]

    def _payload(self, prompt: str, params: SamplingParams) -> tuple[str, dict]:
        body = {
            "model": self.model,
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        body.update(self.extra_body)
        if params.seed is not None:
            body["seed"] = params.seed
        if self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
            return "/v1/chat/completions", body
        body["prompt"] = prompt
        return "/v1/completions", body

    def _parse(self, data, params: SamplingParams) -> list[Generation]:
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ValueError("response JSON has no 'choices' list")
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        usage = data.get("usage") or {}
        n_prompt = int(usage.get("prompt_tokens", 0) or 0)
        n_compl = int(usage.get("completion_tokens", 0) or 0)
        out = []
        for c in choices:
            if not isinstance(c, dict):
                raise ValueError("a choice is not an object")
            text = c["message"].get("content") if self.chat else c.get("text")
            if not isinstance(text, str):
                raise ValueError("a choice has no text")
            out.append(Generation(text, n_prompt, n_compl // max(len(choices), 1), c.get("finish_reason")))
        if len(out) != params.n:
            raise ValueError(f"asked for n={params.n} choices, got {len(out)}")
        return out

    async def _one(
        self, client: httpx.AsyncClient, sem: asyncio.Semaphore, prompt: str, params: SamplingParams
    ) -> list[Generation]:
        path, body = self._payload(prompt, params)
        last = "unknown error"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            async with sem:
                if self._dead is not None:
                    self.stats["not_sent"] += 1
                    return [Generation("", error=f"not sent: {self._dead}") for _ in range(params.n)]
                self.stats["requests"] += 1
                try:
                    resp = await client.post(path, json=body)
                    if resp.status_code == 200:
                        try:
                            out = self._parse(resp.json(), params)
                            self._fail_run = 0
                            return out
                        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
                            last = f"malformed response: {e}"
                    elif resp.status_code in RETRY_STATUS:
                        last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                        retry_after = _retry_after(resp.headers.get("retry-after"))
                    else:
                        text = resp.text[:300]
                        kind = "context overflow" if _is_overflow(resp.status_code, text) else "not retried"
                        return self._final_failure(f"HTTP {resp.status_code} ({kind}): {text}", params.n)
                except (httpx.TimeoutException, httpx.TransportError) as e:
                    last = f"{type(e).__name__}: {e}"
            if attempt < self.max_retries and self._dead is None:
                self.stats["retries"] += 1
                delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
                if retry_after is not None:
                    delay = min(max(delay, retry_after), self.max_backoff)
                await asyncio.sleep(delay)
        return self._final_failure(f"failed after {self.max_retries + 1} attempts: {last}", params.n)

    async def agenerate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        sem = asyncio.Semaphore(self.concurrency)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(
            base_url=self.base_url,
            timeout=self.timeout,
            headers=headers,
            limits=limits,
            transport=self.transport,
        ) as client:
            per = params if isinstance(params, (list, tuple)) else [params] * len(prompts)
            if len(per) != len(prompts):
                raise ValueError(f"{len(per)} SamplingParams for {len(prompts)} prompts")
            return list(await asyncio.gather(*(self._one(client, sem, p, q) for p, q in zip(prompts, per))))

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        """Blocking wrapper (runs its own event loop; inside a running loop use `agenerate`)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(prompts, params))
        raise RuntimeError("generate() called inside a running event loop; await agenerate() instead")
