"""The async judge protocol every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class JudgeParams:
    """Sampling parameters sent with each request (and part of the cache key)."""

    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int = 1024
    response_format: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Completion:
    """One judge answer plus what it cost."""

    text: str
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    latency_s: float = 0.0
    attempts: int = 1
    structured: bool = False


class JudgeError(RuntimeError):
    """A judge call failed for good (after retries)."""


@runtime_checkable
class Judge(Protocol):
    """``await judge.complete(messages, params) -> Completion``; `endpoint` and `model` identify it."""

    model: str
    endpoint: str
    supports_structured_output: bool

    async def complete(self, messages: list[dict], params: JudgeParams) -> Completion: ...

    async def aclose(self) -> None: ...
