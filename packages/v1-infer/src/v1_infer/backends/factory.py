"""Build a backend by name (used by the CLI)."""

from __future__ import annotations


def make_generator(
    backend: str,
    model: str,
    *,
    base_url: str | None = None,
    batch_size: int = 16,
    concurrency: int = 64,
    timeout: float = 120.0,
    chat: bool = False,
    api_key: str = "EMPTY",
    max_retries: int = 4,
    abort_after: int = 8,
    extra_body: dict | None = None,
    device=None,
    progress: bool = False,
):
    """``hf``: a local transformers folder; ``vllm``: a model path/name for vLLM in-process;
    ``openai``: a model name served at ``base_url`` (vLLM / SGLang / any OpenAI-compatible server).
    ``device`` (a torch.device or name) places the hf model; the other backends manage their own."""
    if backend == "hf":
        from pathlib import Path

        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .hf import HFGenerator

        if not Path(model).is_dir():
            raise FileNotFoundError(f"--model must be a local model folder for the hf backend: {model}")
        tok = AutoTokenizer.from_pretrained(model, local_files_only=True)
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        lm = AutoModelForCausalLM.from_pretrained(model, local_files_only=True).eval()
        if device is not None:
            lm = lm.to(device)
        return HFGenerator(lm, tok, batch_size=batch_size, chat=chat, progress=progress)
    if backend == "vllm":
        from .vllm import VLLMGenerator

        return VLLMGenerator(model)
    if backend == "openai":
        from .openai_compat import OpenAICompatGenerator

        if not base_url:
            raise ValueError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000)")
        return OpenAICompatGenerator(
            base_url,
            model,
            chat=chat,
            concurrency=concurrency,
            timeout=timeout,
            api_key=api_key,
            max_retries=max_retries,
            abort_after=abort_after,
            extra_body=extra_body,
        )
    raise ValueError(f"unknown backend {backend!r}; choose hf, vllm or openai")
