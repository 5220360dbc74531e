"""Small models for the synthetic tasks, each built from `InterleavedHeadAttention` layers.

An "MHA" arm is the same layer with P = 1 and frozen identity mixing (exactly MHA, DESIGN.md pitfall 5), so
arms differ only in what IHA adds.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import IHAConfig
from .module import InterleavedHeadAttention
from .tasks.polyfilter import PolyFilterTask


def make_attention(P: int, freeze_p1: bool = True, **cfg) -> InterleavedHeadAttention:
    """An IHA layer; P = 1 gives plain MHA (identity mixing, frozen)."""
    if P == 1:
        cfg["init"] = "mha_exact"  # frozen identity mixing: exactly MHA
        if cfg.get("rope_mode") == "virtual":
            cfg["rope_mode"] = "token"  # identical at P = 1
    layer = InterleavedHeadAttention(IHAConfig(num_pseudo_heads=P, **cfg))
    if P == 1 and freeze_p1:
        layer.mixing.requires_grad_(False)
    return layer


class PolyFilterModel(nn.Module):
    """One linear-attention layer, no mask, no RoPE, read out by W_O (DESIGN.md §3.2 A)."""

    def __init__(self, task: PolyFilterTask, heads: int, P: int, init: str = "identity_noise"):
        super().__init__()
        dv = -(-task.out_dim // heads)
        self.attn = make_attention(
            P,
            hidden_size=task.in_dim,
            num_heads=heads,
            head_dim=task.n_nodes,
            v_head_dim=dv,
            mask_mode="none",
            rope_mode="none",
            softmax="linear",
            backend="eager",
            out_features=task.out_dim,
            init=init,
        )

    def forward(self, x):
        return self.attn(x)[0]


class Block(nn.Module):
    def __init__(self, d_model: int, attn: InterleavedHeadAttention):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = attn
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x):
        x = x + self.attn(self.n1(x))[0]
        return x + self.mlp(self.n2(x))


class TinyLM(nn.Module):
    """Embedding -> blocks -> LayerNorm -> head. ``layers`` lists (P, window) per block."""

    def __init__(
        self,
        vocab: int,
        d_model: int,
        heads: int,
        layers: list[tuple[int, int | None]],
        mask_mode: str = "flat_causal",
        rope_mode: str = "virtual",
        n_out: int | None = None,
        backend: str = "sdpa",
    ):
        super().__init__()
        self.emb = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(
            Block(
                d_model,
                make_attention(
                    P,
                    hidden_size=d_model,
                    num_heads=heads,
                    window=w,
                    mask_mode=mask_mode,
                    rope_mode=rope_mode,
                    backend=backend,
                ),
            )
            for P, w in layers
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_out or vocab)

    def forward(self, tokens, extra: torch.Tensor | None = None):
        x = self.emb(tokens)
        if extra is not None:
            x = x + extra
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


class RelCompModel(nn.Module):
    """Bidirectional one-layer model with row/column embeddings (DESIGN.md §3.2 B) and a per-position logit."""

    def __init__(self, m: int, d_model: int = 64, heads: int = 4, P: int = 1):
        super().__init__()
        self.m = m
        self.row, self.col = nn.Embedding(m, d_model), nn.Embedding(m, d_model)
        self.lm = TinyLM(2, d_model, heads, [(P, None)], mask_mode="none", rope_mode="none", n_out=1)

    def forward(self, tokens):
        idx = torch.arange(self.m * self.m, device=tokens.device)
        pos = self.row(idx // self.m) + self.col(idx % self.m)
        return self.lm(tokens, extra=pos).squeeze(-1)


def param_count(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
