"""transformers backend (the embedded default): batched, left-padded sampling with `model.generate`."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .base import Generation, SamplingParams


class HFGenerator:
    """Wraps a causal LM and its tokenizer. Prompts are encoded (optionally through the chat template),
    left-padded and generated ``batch_size`` at a time; token counts come from the tokenizer.

    ``max_prompt_tokens`` keeps the *last* tokens of over-long prompts (the rating instructions sit at the
    end of the judge templates).
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        batch_size: int = 16,
        chat: bool = False,
        max_prompt_tokens: int | None = None,
        progress: bool = False,
    ):
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a pad token for batched generation")
        self.model, self.tok = model, tokenizer
        self.batch_size, self.chat, self.progress = batch_size, chat, progress
        self.max_prompt_tokens = max_prompt_tokens
        self.device = next(model.parameters()).device

    def _encode(self, prompt: str) -> list[int]:
        if self.chat:
            ids = self.tok.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
            )
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
            if self.tok.bos_token_id is not None:
                ids = [self.tok.bos_token_id] + ids
        if self.max_prompt_tokens is not None and len(ids) > self.max_prompt_tokens:
            ids = ids[-self.max_prompt_tokens :]
        return list(ids)

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        encoded = [self._encode(p) for p in prompts]
        flat = [(k, ids) for k, ids in enumerate(encoded) for _ in range(params.n)]
        out: list[list[Generation]] = [[] for _ in prompts]
        pad = self.tok.pad_token_id
        if params.seed is not None:
            torch.manual_seed(params.seed)
        chunks = range(0, len(flat), self.batch_size)
        for s in tqdm(chunks, desc="generate", disable=not self.progress):
            chunk = flat[s : s + self.batch_size]
            width = max(len(ids) for _, ids in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (_, ids) in enumerate(chunk):  # left padding
                input_ids[r, width - len(ids) :] = torch.tensor(ids)
                mask[r, width - len(ids) :] = 1
            kw = dict(max_new_tokens=params.max_tokens, pad_token_id=pad, eos_token_id=self.tok.eos_token_id)
            if params.temperature > 0:
                kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
            else:
                kw.update(do_sample=False)
            seqs = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device), **kw
            )
            new = seqs[:, width:].cpu()
            for r, (k, ids) in enumerate(chunk):
                toks = new[r].tolist()
                finish = "length"
                if self.tok.eos_token_id in toks:
                    toks = toks[: toks.index(self.tok.eos_token_id)]
                    finish = "stop"
                toks = [t for t in toks if t != pad]
                text = self.tok.decode(toks, skip_special_tokens=True)
                out[k].append(Generation(text, len(ids), len(toks), finish))
        return out
