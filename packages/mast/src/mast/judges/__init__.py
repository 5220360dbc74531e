"""Judges behind one async protocol: OpenAI-compatible HTTP, local transformers, deterministic stub.

Imported on first use (PEP 562): `from mast.judges import StubJudge` does not load httpx or torch.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .base import Completion, Judge, JudgeError, JudgeParams

_LAZY = {
    "HFLocalJudge": "hf_local",
    "OpenAICompatibleJudge": "openai_compat",
    "STYLES": "stub",
    "StubBehaviour": "stub",
    "StubJudge": "stub",
    "StubServer": "stub",
}

if TYPE_CHECKING:
    from .hf_local import HFLocalJudge
    from .openai_compat import OpenAICompatibleJudge
    from .stub import STYLES, StubBehaviour, StubJudge, StubServer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "STYLES",
    "Completion",
    "HFLocalJudge",
    "Judge",
    "JudgeError",
    "JudgeParams",
    "OpenAICompatibleJudge",
    "StubBehaviour",
    "StubJudge",
    "StubServer",
]
