"""A judge speaking the OpenAI-compatible ``/v1/chat/completions`` HTTP API (vLLM, OpenAI, the stub).

No SDK dependency: plain ``httpx``. Retries 429 / 5xx / timeouts / connection errors with exponential
backoff and jitter, honouring ``Retry-After`` (DESIGN.md §5.2.2). Concurrency is bounded by the caller
(`Annotator`) and by ``max_connections`` here.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx

from .base import Completion, JudgeError, JudgeParams

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
DEFAULT_MAX_RESPONSE_BYTES = 8 * 2**20


class ResponseTooLargeError(JudgeError):
    """The server sent more than ``max_response_bytes`` (a misconfigured or hostile endpoint)."""


class OpenAICompatibleJudge:
    """Judge at `base_url` (e.g. ``http://127.0.0.1:8000/v1``) with model `model`.

    ``structured_output=True`` sends ``response_format={"type":"json_schema",...}`` when the request
    carries a schema; if the server rejects it (HTTP 400 naming response_format), the judge turns it off
    and resends as plain text (recorded on the completion as ``structured=False``).

    Response bodies are read in chunks and refused (`ResponseTooLargeError`, not retried) once they pass
    ``max_response_bytes`` (default 8 MiB; a completion of 1k tokens is a few KiB), so a broken or
    hostile endpoint cannot make the client buffer an unbounded body.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        structured_output: bool = True,
        max_connections: int = 256,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be >= 1")
        self.max_response_bytes = int(max_response_bytes)
        self.base_url = base_url.rstrip("/")
        self.endpoint = self.base_url
        self.model = model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.supports_structured_output = structured_output
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 30.0))
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.n_requests = 0  # HTTP requests actually sent (including retries)
        self.n_retries = 0

    def _get_client(self) -> httpx.AsyncClient:
        """One client per event loop (``asyncio.run`` per `Annotator.annotate` call makes a new loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                timeout=self._timeout, headers=self._headers, limits=self._limits
            )
            self._loop = loop
        return self._client

    def _body(self, messages, params: JudgeParams) -> dict:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.response_format and self.supports_structured_output:
            body["response_format"] = params.response_format
        return body

    def _delay(self, attempt: int, resp: httpx.Response | None) -> float:
        if resp is not None and resp.headers.get("retry-after"):
            try:
                return min(float(resp.headers["retry-after"]), self.max_backoff_s)
            except ValueError:
                pass
        return min(self.backoff_s * 2**attempt, self.max_backoff_s) * (0.5 + random.random() / 2)

    async def complete(self, messages: list[dict], params: JudgeParams) -> Completion:
        url = f"{self.base_url}/chat/completions"
        t0 = time.perf_counter()
        last_err = ""
        attempt = 0
        while True:
            body = self._body(messages, params)
            resp = None
            try:
                self.n_requests += 1
                resp, raw = await self._post(url, body)
                text_body = raw.decode("utf-8", errors="replace")
                if resp.status_code == 400 and "response_format" in body and "response_format" in text_body:
                    self.supports_structured_output = False  # server cannot do it: fall back to text
                    continue
                if resp.status_code in RETRY_STATUS:
                    last_err = f"HTTP {resp.status_code}: {text_body[:200]}"
                elif resp.status_code >= 400:
                    raise JudgeError(f"{url} answered HTTP {resp.status_code}: {text_body[:500]}")
                else:
                    try:
                        data = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError) as e:
                        raise JudgeError(f"{url}: response is not JSON ({e}): {text_body[:200]!r}") from e
                    try:
                        text = data["choices"][0]["message"]["content"] or ""
                    except (KeyError, IndexError, TypeError) as e:
                        raise JudgeError(f"{url}: malformed completion {str(data)[:300]}") from e
                    u = data.get("usage") or {}
                    usage = {
                        "prompt_tokens": int(u.get("prompt_tokens") or 0),
                        "completion_tokens": int(u.get("completion_tokens") or 0),
                        "cached_tokens": int(
                            (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
                        ),
                    }
                    return Completion(
                        text,
                        data.get("model", self.model),
                        usage,
                        time.perf_counter() - t0,
                        attempt + 1,
                        "response_format" in body,
                    )
            except (httpx.TimeoutException, httpx.TransportError) as e:
                last_err = f"{type(e).__name__}: {e}"
            if attempt >= self.max_retries:
                raise JudgeError(f"{url}: giving up after {attempt + 1} attempts; last error: {last_err}")
            self.n_retries += 1
            await asyncio.sleep(self._delay(attempt, resp))
            attempt += 1

    async def _post(self, url: str, body: dict) -> tuple[httpx.Response, bytes]:
        """POST and read the body in chunks, refusing more than `max_response_bytes`."""
        limit = self.max_response_bytes
        async with self._get_client().stream("POST", url, json=body) as resp:
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise ResponseTooLargeError(
                    f"{url}: response body of {int(declared)} bytes exceeds the {limit}-byte limit "
                    "(max_response_bytes / --max-response-bytes)"
                )
            buf = bytearray()
            async for chunk in resp.aiter_bytes():
                buf += chunk
                if len(buf) > limit:
                    raise ResponseTooLargeError(
                        f"{url}: response body exceeds the {limit}-byte limit "
                        "(max_response_bytes / --max-response-bytes); stopped reading"
                    )
            return resp, bytes(buf)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
