"""Text-generation backends behind one `TextGenerator` protocol (imported lazily: torch / vLLM / httpx
are only loaded by the backend that needs them)."""

from .base import Generation, SamplingParams, TextGenerator

__all__ = [
    "Generation",
    "SamplingParams",
    "TextGenerator",
    "HFGenerator",
    "VLLMGenerator",
    "OpenAICompatGenerator",
]


def __getattr__(name):
    if name == "HFGenerator":
        from .hf import HFGenerator

        return HFGenerator
    if name == "VLLMGenerator":
        from .vllm import VLLMGenerator

        return VLLMGenerator
    if name == "OpenAICompatGenerator":
        from .openai_compat import OpenAICompatGenerator

        return OpenAICompatGenerator
    raise AttributeError(name)
