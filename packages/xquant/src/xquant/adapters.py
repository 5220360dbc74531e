"""Per-architecture access to the attention projections: find them, rematerialize K/V, apply RoPE.

Paper §3.1 / DESIGN.md §1.1: X is the *post-input_layernorm* hidden state, i.e. exactly the
`hidden_states` argument `self_attn` receives in HF Llama/Mistral/Qwen2/Qwen3. Rematerialization is
K = X̂ W_k (+ b_k) -> k_norm (Qwen3) -> RoPE *last*, V = X̂ W_v (+ b_v) (DESIGN.md pitfalls 1, 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: `config.model_type`s whose attention is (q_proj, k_proj, v_proj, optional bias, optional k_norm, RoPE).
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass
class AttnSpec:
    """One attention layer's pieces needed for rematerialization."""

    layer_idx: int
    module: nn.Module
    k_proj: nn.Linear
    v_proj: nn.Linear
    k_norm: nn.Module | None
    head_dim: int
    num_heads: int
    num_kv_heads: int
    hidden_size: int
    _wkv: dict = field(default_factory=dict, repr=False, compare=False)

    def kv_weight(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[W_k | W_v] as one [d, 2 d_kv] matrix (+ the concatenated bias), in `dtype` (default: the
        weights'), built once and reused until a weight changes in place (issue 22.4: no weight
        concatenation per decode step)."""
        k, v = self.k_proj.weight, self.v_proj.weight
        dtype = dtype or k.dtype
        stamp = (k.data_ptr(), k._version, v.data_ptr(), v._version, k.dtype, k.device)
        memo = self._wkv.get(dtype)
        if memo is None or memo[0] != stamp:
            w = torch.cat([k.detach(), v.detach()], 0).T.to(dtype)
            bias = None
            if self.k_proj.bias is not None and self.v_proj.bias is not None:
                bias = torch.cat([self.k_proj.bias.detach(), self.v_proj.bias.detach()]).to(dtype)
            memo = self._wkv[dtype] = (stamp, w, bias)
        return memo[1], memo[2]

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def split_heads(self, y: torch.Tensor) -> torch.Tensor:
        """[B, T, Hkv*hd] -> [B, Hkv, T, hd] (heads are contiguous blocks of hd output channels)."""
        b, t, _ = y.shape
        return y.view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)

    def finish_k(self, k_lin: torch.Tensor) -> torch.Tensor:
        """Projected keys [B, T, Hkv*hd] (bias included) -> k_norm if any -> [B, Hkv, T, hd], pre-RoPE."""
        b, t, _ = k_lin.shape
        k = k_lin.view(b, t, self.num_kv_heads, self.head_dim)
        if self.k_norm is not None:
            k = self.k_norm(k)
        return k.transpose(1, 2)

    def remat_k(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-RoPE keys from X̂ [B, T, d]."""
        return self.finish_k(F.linear(x, self.k_proj.weight, self.k_proj.bias))

    def remat_v(self, x: torch.Tensor) -> torch.Tensor:
        return self.split_heads(F.linear(x, self.v_proj.weight, self.v_proj.bias))


def check_supported(model: nn.Module) -> None:
    """Raise a clear error for architectures / layer types XQuantCache cannot serve exactly."""
    config = getattr(model, "config", None)
    mt = getattr(config, "model_type", None)
    if mt not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"unsupported architecture {mt!r}: xquant supports {SUPPORTED_MODEL_TYPES} "
            "(separate q/k/v projections, RoPE, pre-norm)"
        )
    has_text = config is not None and hasattr(config, "get_text_config")
    text = config.get_text_config(decoder=True) if has_text and config is not None else config
    layer_types = getattr(text, "layer_types", None) or []
    if (
        any(t != "full_attention" for t in layer_types)
        or getattr(text, "sliding_window", None)
        and (mt == "mistral" or getattr(text, "use_sliding_window", False))
    ):
        raise ValueError(
            f"{mt} model uses sliding-window attention layers; xquant caches only full-attention layers "
            "(evicting rematerialized tokens is not implemented)"
        )


def _decoder(model: Any) -> Any:
    """The decoder stack of a transformers causal LM (its `.layers` and `.rotary_emb`)."""
    return model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", None)


def attention_specs(model: Any) -> list[AttnSpec]:
    """The AttnSpec of every decoder layer, in layer order."""
    check_supported(model)
    decoder = _decoder(model)
    cfg = model.config.get_text_config(decoder=True)
    specs = []
    for i, layer in enumerate(decoder.layers):
        attn = layer.self_attn
        for name in ("k_proj", "v_proj"):
            if not isinstance(getattr(attn, name, None), nn.Linear):
                raise ValueError(f"layer {i} attention has no nn.Linear {name}; cannot rematerialize K/V")
        head_dim = attn.head_dim
        specs.append(
            AttnSpec(
                layer_idx=getattr(attn, "layer_idx", i),
                module=attn,
                k_proj=attn.k_proj,
                v_proj=attn.v_proj,
                k_norm=getattr(attn, "k_norm", None),
                head_dim=head_dim,
                num_heads=cfg.num_attention_heads,
                num_kv_heads=attn.k_proj.out_features // head_dim,
                hidden_size=attn.k_proj.in_features,
            )
        )
    return specs


def rotary_module(model: Any) -> nn.Module | None:
    return getattr(_decoder(model), "rotary_emb", None)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """HF RoPE on [B, H, T, hd] keys with cos/sin [B, T, hd] (same formula as modeling_llama)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (k * cos) + (rotate_half(k) * sin)


def invert_rope(k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Undo `apply_rope` (for KIVI*: pre-RoPE keys from the post-RoPE keys the model hands the cache).

    RoPE is a per-pair rotation scaled by a = sqrt(cos² + sin²) (a = 1 unless YaRN-style scaling), so
    k = (k' cos - rotate_half(k') sin) / a².
    """
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    a2 = cos * cos + sin * sin
    return ((k * cos) - (rotate_half(k) * sin)) / a2
