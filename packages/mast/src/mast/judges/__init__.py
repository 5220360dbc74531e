"""Judges behind one async protocol: OpenAI-compatible HTTP, local transformers, deterministic stub."""

from .base import Completion, Judge, JudgeError, JudgeParams
from .hf_local import HFLocalJudge
from .openai_compat import OpenAICompatibleJudge
from .stub import STYLES, StubBehaviour, StubJudge, StubServer

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
