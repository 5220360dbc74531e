"""transformers integration through the attention interface (Llama, Mistral, Qwen2, Qwen3).

`patch_model_with_iha` attaches an `IHAMixing` to chosen ``self_attn`` modules and switches the model
to a registered attention function. That function receives the layer's q/k/v *after* token-position
RoPE and *after* the cache update, so the ``DynamicCache`` keeps original-size K/V (P× less memory)
and mixing happens on the fly: cached generation equals an uncached forward and
``get_seq_length()`` stays in real tokens (notes §6.8 option (a)).

``rope_mode="virtual"`` rotates the mixed q̃/k̃ further by n·(P−1)+p, landing them at n·P+p (rotation
and mixing commute at one position). Query positions come from ``position_ids``; key positions are
the cache indices 0..S−1, so left-padded batches need ``rope_mode="token"`` to stay exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from .functional import iha_attention
from .mixing import IHAMixing
from .rope import cos_sin

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
ATTN_NAME = "iha"


def _token_mask_from_hf(attention_mask, n_q: int, n_kv: int):
    if attention_mask is None:
        return None
    m = attention_mask
    if m.dtype != torch.bool:  # additive float mask: 0 = keep
        m = m == 0
    return m[..., -n_q:, :n_kv]


def iha_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
):
    """AttentionInterface function: IHA for patched layers, plain SDPA for the others.

    ``query [B, H, N, d]``, ``key/value [B, Hkv, S, d]`` (full cache, original heads) ->
    ``([B, N, H, d], None)``.
    """
    mix: IHAMixing | None = getattr(module, "iha_mixing", None)
    if mix is None:  # an unpatched (e.g. global MHA) layer of a scheduled model
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        mask = attention_mask
        return sdpa_attention_forward(
            module, query, key, value, mask, dropout=dropout, scaling=scaling, **kwargs
        )
    cfg = module.iha_cfg
    n_q, n_kv, P = query.shape[2], key.shape[2], mix.P
    rope_q = rope_k = None
    if cfg["rope_mode"] == "virtual":
        freqs = module.iha_inv_freq
        pos = kwargs.get("position_ids")
        qpos = (
            pos[:, -n_q:]
            if pos is not None
            else torch.arange(n_kv - n_q, n_kv, device=query.device)[None].expand(query.shape[0], n_q)
        )
        kpos = torch.arange(n_kv, device=query.device)
        p = torch.arange(P, device=query.device)
        rope_q = cos_sin((qpos[..., None] * (P - 1) + p).flatten(-2), freqs)
        rope_k = cos_sin((kpos[:, None] * (P - 1) + p).flatten(), freqs)
    token_mask = _token_mask_from_hf(attention_mask, n_q, n_kv)
    if cfg["backend"] == "triton" and token_mask is not None:
        # the kernel builds the causal pattern itself; only a plain (bottom-right) causal mask may be dropped
        causal = torch.ones(n_q, n_kv, dtype=torch.bool, device=query.device).tril(n_kv - n_q)
        if bool((token_mask == causal).all()):
            token_mask = None
    out = iha_attention(
        query,
        key,
        value,
        mix.alpha_q,
        mix.alpha_k,
        mix.alpha_v,
        mix.R,
        collapse_mode=mix.collapse,
        mask_mode=cfg["mask_mode"],
        window=cfg["window"],
        scale=scaling,
        backend=cfg["backend"],
        token_mask=token_mask,
        rope_q=rope_q,
        rope_k=rope_k,
        dropout=dropout,
        training=module.training,
    )
    return out, None


def _iha_mask(*args, **kwargs):
    """Always build the explicit bool token mask (IHA expands it to virtual units; no is_causal skip)."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


def register_iha_attention(name: str = ATTN_NAME) -> str:
    """Register `iha_attention_forward` (and its mask builder) with transformers under ``name``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, iha_attention_forward)
    AttentionMaskInterface.register(name, _iha_mask)
    return name


def iha_layer_schedule(n_layers: int, local: int = 4, global_: int = 1) -> list[str]:
    """The paper's FLOP-matched pattern (§5.1, App. C): ``local`` sliding-window IHA layers, then
    ``global_`` standard-attention layers, repeated; the last layer is forced global (as slowrun did)."""
    if n_layers < 1 or local < 0 or global_ < 1:
        raise ValueError("need n_layers >= 1, local >= 0, global >= 1")
    period = local + global_
    kinds = ["iha_local" if i % period < local else "mha_global" for i in range(n_layers)]
    kinds[-1] = "mha_global"
    return kinds


def _parse_layers(layers, n_layers: int) -> dict[int, bool]:
    """-> {layer index: is_local}."""
    if isinstance(layers, str):
        if layers == "all":
            return {i: False for i in range(n_layers)}
        m = re.fullmatch(r"schedule:(\d+):(\d+)", layers)
        if not m:
            raise ValueError(
                f"layers={layers!r}: use 'all', 'schedule:<local>:<global>' or a list of indices"
            )
        kinds = iha_layer_schedule(n_layers, int(m.group(1)), int(m.group(2)))
        return {i: True for i, k in enumerate(kinds) if k == "iha_local"}
    if isinstance(layers, Sequence):
        out = {}
        for i in layers:
            if not isinstance(i, int) or not -n_layers <= i < n_layers:
                raise ValueError(f"layer index {i!r} out of range for a {n_layers}-layer model")
            out[i % n_layers] = False
        return out
    raise TypeError(f"layers must be 'all', 'schedule:a:b' or a list of ints, got {type(layers).__name__}")


def patch_model_with_iha(
    model: nn.Module,
    layers: str | Sequence[int] = "all",
    P: int = 2,
    *,
    collapse: str = "global",
    mask_mode: str = "flat_causal",
    rope_mode: str = "token",
    init: str = "mha_exact",
    init_std: float = 0.02,
    window: int | None = None,
    local_window: int | None = None,
    seq_len: int | None = None,
    backend: str = "sdpa",
    name: str = ATTN_NAME,
) -> list[IHAMixing]:
    """Turn chosen attention layers of a Llama/Mistral/Qwen2/Qwen3 model into IHA layers, in place.

    * ``layers``: ``"all"``, ``"schedule:4:1"`` (4 sliding-window IHA layers then 1 standard layer; the
      local window is ``local_window`` tokens or N/(2P²) from ``seq_len``), or a list of indices.
    * defaults (``init="mha_exact"``, ``rope_mode="token"``, flat-causal with R on the last pseudo)
      leave the model's function unchanged at patch time, so a pretrained model can be fine-tuned.
    Returns the new `IHAMixing` modules (use `iha_param_groups` for the optimizer).
    """
    from .config import IHAConfig

    mtype = getattr(getattr(model, "config", None), "model_type", None)
    if mtype not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"unsupported model architecture {mtype!r}; IHA patching supports {SUPPORTED_MODEL_TYPES}"
        )
    if mask_mode == "none":
        raise ValueError("mask_mode='none' is bidirectional and cannot be used inside a causal LM")
    cfg = model.config
    n_layers = cfg.num_hidden_layers
    H, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    # validates P, heads/KV-heads divisibility, mode names, init/rope compatibility
    IHAConfig(
        hidden_size=cfg.hidden_size,
        num_heads=H,
        num_kv_heads=Hkv,
        head_dim=head_dim,
        num_pseudo_heads=P,
        collapse=collapse,
        mask_mode=mask_mode,
        rope_mode=rope_mode,
        init=init,
        backend=backend,
        window=window,
    )
    chosen = _parse_layers(layers, n_layers)
    if any(chosen.values()) and local_window is None:
        if seq_len is None:
            raise ValueError("a schedule needs local_window (tokens) or seq_len to derive W = N/(2P²)")
        local_window = max(1, seq_len // (2 * P * P))
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    rotary = getattr(base, "rotary_emb", None)
    if rope_mode == "virtual" and rotary is None:
        raise ValueError("rope_mode='virtual' needs the model's rotary embedding (model.model.rotary_emb)")
    device = next(model.parameters()).device
    mixes = []
    for i, is_local in sorted(chosen.items()):
        attn = base.layers[i].self_attn
        mix = IHAMixing(H, Hkv, P, collapse=collapse, init=init, init_std=init_std, mask_mode=mask_mode).to(
            device
        )
        attn.iha_mixing = mix
        attn.iha_cfg = {
            "mask_mode": mask_mode,
            "rope_mode": rope_mode,
            "window": local_window if is_local else window,
            "backend": backend,
        }
        if rope_mode == "virtual":
            attn.register_buffer("iha_inv_freq", rotary.inv_freq.detach().clone().float(), persistent=False)
        mixes.append(mix)
    register_iha_attention(name)
    try:
        model.set_attn_implementation(name)
    except (ValueError, AttributeError, KeyError):
        cfg._attn_implementation = name
    return mixes


def iha_param_groups(model: nn.Module, lr: float, weight_decay: float = 0.1, mix_lr: float | None = None):
    """Optimizer groups: the model's weights, and IHA's α/R (fp32, no weight decay; notes §6.12)."""
    mix_ids = {id(p) for m in model.modules() if isinstance(m, IHAMixing) for p in m.parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in mix_ids]
    mixp = [p for p in model.parameters() if id(p) in mix_ids]
    return [
        {"params": rest, "lr": lr, "weight_decay": weight_decay},
        {"params": mixp, "lr": mix_lr or lr, "weight_decay": 0.0},
    ]
