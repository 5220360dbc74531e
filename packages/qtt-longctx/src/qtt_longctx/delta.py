"""Trainable query updates that never touch the base weights (DESIGN.md pitfalls 1, 2, 9).

`QueryDelta` finds ``self_attn.q_proj`` in every decoder layer and attaches a forward hook that adds the
output of a *separate fp32 parameter*: ``q = W_Q h (+ b) + ΔW h`` (mode "full", ΔW zero-initialised, shape
of W_Q) or ``q = W_Q h + (α/r)·B A h`` (mode "lora", B zero-initialised). The base module is untouched, so
removing the hook restores the model bit-exactly, and an AdamW step of 1e-5 that a bf16 weight would round
away (bf16 spacing ~1e-4 at |w|~0.02) accumulates in the fp32 delta instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def find_query_projections(model: nn.Module) -> list[nn.Linear]:
    """The ``q_proj`` Linear of each decoder layer, in layer order; a clear error for other layouts."""
    backbone = getattr(model, "model", model)
    layers = getattr(backbone, "layers", None)
    if layers is None:
        raise ValueError(
            f"{type(model).__name__} has no `.model.layers`: qTTT expects a Llama/Mistral/Qwen2/Qwen3-style "
            "causal LM whose decoder layers hold `self_attn.q_proj`"
        )
    found = []
    for i, layer in enumerate(layers):
        attn = getattr(layer, "self_attn", None)
        q = getattr(attn, "q_proj", None)
        if not isinstance(q, nn.Linear):
            raise ValueError(
                f"decoder layer {i} of {type(model).__name__} has no `self_attn.q_proj` nn.Linear "
                f"(found {type(q).__name__}); qTTT needs separate query projections (fused qkv is unsupported)"
            )
        found.append(q)
    return found


class QueryDelta(nn.Module):
    """fp32 trainable update of the query projections of the selected layers, applied through hooks."""

    def __init__(
        self,
        model: nn.Module,
        mode: str = "full",
        layers: str | Sequence[int] = "all",
        lora_rank: int = 8,
        lora_alpha: float = 16.0,
        seed: int = 0,
    ):
        super().__init__()
        projections = find_query_projections(model)
        n = len(projections)
        if layers == "all":
            idx = list(range(n))
        elif isinstance(layers, str):
            raise ValueError(f"QTTConfig.layers must be 'all' or a list of layer indices, got {layers!r}")
        else:
            idx = sorted(set(layers))
            bad = [i for i in idx if not 0 <= i < n]
            if bad or not idx:
                raise ValueError(f"QTTConfig.layers {list(layers)} not valid for a model with {n} layers")
        self.mode, self.layer_indices = mode, idx
        self.scale = lora_alpha / lora_rank if mode == "lora" else 1.0
        self._targets = [projections[i] for i in idx]
        gen = torch.Generator().manual_seed(seed)
        self.delta = nn.ParameterList()
        self.lora_a = nn.ParameterList()
        self.lora_b = nn.ParameterList()
        for q in self._targets:
            dev = q.weight.device
            out_f, in_f = q.weight.shape
            if mode == "full":
                self.delta.append(nn.Parameter(torch.zeros(out_f, in_f, dtype=torch.float32, device=dev)))
            else:  # LoRA: A ~ kaiming-uniform, B = 0, so the initial update is exactly zero
                bound = 1.0 / math.sqrt(in_f)
                a = (torch.rand(lora_rank, in_f, generator=gen) * 2 - 1) * bound
                self.lora_a.append(nn.Parameter(a.to(dev)))
                self.lora_b.append(nn.Parameter(torch.zeros(out_f, lora_rank, device=dev)))
        self._handles: list = []

    # --- the update --------------------------------------------------------------------------------
    def weight_update(self, j: int) -> torch.Tensor:
        """ΔW_Q (fp32) of the j-th adapted layer."""
        if self.mode == "full":
            return self.delta[j]
        return self.scale * (self.lora_b[j] @ self.lora_a[j])

    def effective_weight(self, j: int) -> torch.Tensor:
        """W_Q + ΔW_Q in fp32 (what the adapted model uses)."""
        return self._targets[j].weight.detach().float() + self.weight_update(j).detach()

    def _hook(self, j: int):
        def hook(module, args, output):
            x = args[0]
            if self.mode == "full":
                extra = F.linear(x.float(), self.delta[j])
            else:
                extra = F.linear(F.linear(x.float(), self.lora_a[j]), self.lora_b[j]) * self.scale
            return output + extra.to(output.dtype)

        return hook

    # --- lifecycle -------------------------------------------------------------------------------
    def attach(self) -> QueryDelta:
        if self._handles:
            raise RuntimeError("QueryDelta is already attached")
        self._handles = [q.register_forward_hook(self._hook(j)) for j, q in enumerate(self._targets)]
        return self

    def remove(self) -> None:
        """Detach the hooks: the model computes exactly what it computed before `attach`."""
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @torch.no_grad()
    def decoupled_weight_decay(self, lr: float, wd: float) -> None:
        """AdamW-style decay of the *effective* W_Q: W ← W − lr·wd·W, i.e. Δ ← Δ − lr·wd·(W0 + Δ).

        Decaying only the delta would pull W_Q toward W0 instead of toward 0, which is not the paper's
        AdamW on W_Q (App. D). In LoRA mode the adapter tensors decay as in any LoRA fine-tune.
        """
        if wd == 0 or lr == 0:
            return
        if self.mode == "full":
            for j, d in enumerate(self.delta):
                d.sub_(lr * wd * (self._targets[j].weight.float() + d))
        else:
            for p in list(self.lora_a) + list(self.lora_b):
                p.mul_(1 - lr * wd)
