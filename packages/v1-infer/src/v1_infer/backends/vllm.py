"""vLLM in-process backend (``pip install v1-infer[vllm]``); vLLM is imported only when used."""

from __future__ import annotations

from .base import Generation, SamplingParams


def _import_vllm():
    try:
        import vllm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the vLLM backend needs vLLM: `pip install 'v1-infer[vllm]'` (or use the 'hf' backend, or an "
            "OpenAI-compatible server with the 'openai' backend)"
        ) from e
    return vllm


class VLLMGenerator:
    """Offline `vllm.LLM` engine: one `generate` call per batch of prompts (continuous batching and automatic
    prefix caching inside vLLM). ``llm_kwargs`` go to `vllm.LLM` (e.g. dtype, max_model_len)."""

    def __init__(self, model: str, *, llm=None, **llm_kwargs):
        self.vllm = _import_vllm()
        self.llm = llm if llm is not None else self.vllm.LLM(model=model, **llm_kwargs)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        sp = self.vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=params.seed,
        )
        results = self.llm.generate(prompts, sp, use_tqdm=False)
        out = []
        for r in results:
            n_prompt = len(r.prompt_token_ids or [])
            out.append([Generation(o.text, n_prompt, len(o.token_ids), o.finish_reason) for o in r.outputs])
        return out
