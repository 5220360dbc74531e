"""A judge running a local transformers causal LM (CPU/GPU), for offline use and smoke tests.

Generation runs in a worker thread (``asyncio.to_thread``) behind a lock: one model, one request at a
time. Greedy decoding when temperature == 0, otherwise sampling seeded per request.
"""

from __future__ import annotations

import asyncio
import threading
import time

from .base import Completion, JudgeParams


class HFLocalJudge:
    """Judge backed by a local model: pass a folder (``HFLocalJudge.from_dir``) or a (model, tokenizer)."""

    supports_structured_output = False

    def __init__(self, model, tokenizer, name: str = "hf-local", max_context: int | None = None):
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template; set tokenizer.chat_template first")
        self.hf_model = model
        self.tokenizer = tokenizer
        self.model = name
        self.endpoint = "hf-local"
        self.max_context = max_context or getattr(model.config, "max_position_embeddings", None)
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, path, device: str = "cpu", **kw) -> HFLocalJudge:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        # transformers types PreTrainedModel.to through a decorator mypy reads as taking the model itself
        model = model.to(device).eval()  # type: ignore[arg-type]
        return cls(model, tok, name=f"hf:{path}", **kw)

    def _generate(self, messages, params: JudgeParams) -> Completion:
        import torch

        t0 = time.perf_counter()
        enc = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ids = enc["input_ids"].to(self.hf_model.device)
        mask = enc.get("attention_mask")
        if self.max_context and ids.shape[1] + params.max_tokens > self.max_context:
            raise ValueError(
                f"prompt of {ids.shape[1]} tokens + {params.max_tokens} new tokens exceeds the "
                f"local model's context of {self.max_context}"
            )
        kw = {"max_new_tokens": params.max_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if params.temperature > 0:
            kw |= {"do_sample": True, "temperature": params.temperature}
            if params.seed is not None:
                torch.manual_seed(params.seed)
        else:
            kw["do_sample"] = False
        with self._lock, torch.no_grad():
            out = self.hf_model.generate(
                ids, attention_mask=None if mask is None else mask.to(ids.device), **kw
            )
        new = out[0, ids.shape[1] :]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        usage = {
            "prompt_tokens": int(ids.shape[1]),
            "completion_tokens": int(new.shape[0]),
            "cached_tokens": 0,
        }
        return Completion(text, self.model, usage, time.perf_counter() - t0)

    async def complete(self, messages: list[dict], params: JudgeParams) -> Completion:
        return await asyncio.to_thread(self._generate, messages, params)

    async def aclose(self) -> None:
        return None
