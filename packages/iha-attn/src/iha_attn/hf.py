"""transformers integration through the attention interface (Llama, Mistral, Qwen2, Qwen3).

`patch_model_with_iha` attaches an `IHAMixing` to chosen ``self_attn`` modules and switches the model
to a registered attention function. That function receives the layer's q/k/v *after* token-position
RoPE and *after* the cache update, so the ``DynamicCache`` keeps original-size K/V (P× less memory)
and mixing happens on the fly: cached generation equals an uncached forward and
``get_seq_length()`` stays in real tokens (DESIGN.md pitfall 8 option (a)).

``rope_mode="virtual"`` rotates the mixed q̃/k̃ further by n·(P−1)+p, landing them at n·P+p (rotation
and mixing commute at one position). Query positions come from ``position_ids``; key positions are
the cache indices 0..S−1, so left-padded batches need ``rope_mode="token"`` to stay exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .functional import iha_attention, iha_decode_attention
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
    cfg: dict[str, Any] = getattr(module, "iha_cfg")  # noqa: B009 - set by patch_model_with_iha
    n_q, n_kv, P = query.shape[2], key.shape[2], mix.P
    token_mask = _token_mask_from_hf(attention_mask, n_q, n_kv)
    virt = cfg["rope_mode"] == "virtual"
    freqs: torch.Tensor | None = getattr(mix, "inv_freq") if virt else None  # noqa: B009 - patch buffer
    if n_q == 1 and not (module.training and dropout):
        # decode (generate): the new token's P pseudo-queries against the ordinary-size cache; the Triton
        # decode kernel when backend="triton" and it can run here, else the torch decode path. Neither
        # builds P-fold pseudo-K/V of the cache (issue 21.4, DESIGN.md §5.3).
        ar = torch.arange(n_kv, device=query.device)
        out = iha_decode_attention(
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
            token_mask=token_mask,
            freqs=freqs,
            q_pos=(ar[-1:] * (P - 1))[None] if virt else None,
            k_base=(ar * (P - 1))[None] if virt else None,
            use_kernel=None if cfg["backend"] == "triton" else False,
        )
        return out, None
    rope_q = rope_k = None
    if freqs is not None:
        rope_q, rope_k = _virtual_rope_offsets(freqs, n_q, n_kv, P, query.device)
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


def _virtual_rope_offsets(freqs: torch.Tensor, n_q: int, n_kv: int, P: int, device):
    """Extra rotations that move the model's token-position RoPE to virtual positions n·P+p.

    q/k arrive already rotated at their token positions; a further rotation by i·(P−1)+p, with i the
    index *in the returned K/V* (queries are the last ``n_q`` of the ``n_kv`` keys), makes every score
    depend on (n_q−n_k)·P + (p_q−p_k), exactly the paper's virtual-position phase difference. Using the
    cache index (not ``position_ids``) keeps query and key offsets on one axis: a sliding-window cache
    that dropped old tokens, or a left-padded row whose position ids start after the pads, only shifts
    both by a constant, which RoPE cancels. Valid whenever positions are consecutive within a sequence
    (HF generate, left padding, packed documents with reset positions).
    """
    p = torch.arange(P, device=device)
    kidx = torch.arange(n_kv, device=device)
    kpos = (kidx[:, None] * (P - 1) + p).flatten()
    qpos = kpos[(n_kv - n_q) * P :]
    return cos_sin(qpos, freqs), cos_sin(kpos, freqs)


def _iha_mask(*args, **kwargs):
    """HF's SDPA mask builder, allowing the mask to be dropped only where IHA reads ``None`` exactly.

    ``None`` is read as "causal, queries bottom-right aligned, no padding": exact when q_len == kv_len
    (flat-causal then runs SDPA with ``is_causal=True``, no mask tensor) or q_len == 1 (decode). HF's
    other skip case (a static cache's prefill, q_len < kv_len with empty future slots) would be misread,
    so there the explicit mask is kept.
    """
    from transformers.masking_utils import sdpa_mask

    q_len = kwargs.get("q_length", args[1] if len(args) > 1 else None)
    kv_len = kwargs.get("kv_length", args[2] if len(args) > 2 else None)
    if not (isinstance(q_len, int) and isinstance(kv_len, int) and (q_len == kv_len or q_len == 1)):
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


def _parse_layers(layers: Any, n_layers: int) -> dict[int, bool]:  # noqa: C901
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
    if isinstance(layers, dict):  # {index: is_local} (what from_pretrained restores)
        out = {}
        for i, loc in layers.items():
            if not isinstance(i, int) or not 0 <= i < n_layers:
                raise ValueError(f"layer index {i!r} out of range for a {n_layers}-layer model")
            out[i] = bool(loc)
        return out
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
    layers: str | Sequence[int] | dict[int, bool] = "all",
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
    cfg: Any = model.config  # a transformers PretrainedConfig
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
    if not chosen:
        raise ValueError(
            f"layers={layers!r} selects no layer of this {n_layers}-layer model (a schedule needs local >= 1 "
            "and a model long enough to have a local layer before its forced-global last layer)"
        )
    if local_window is not None and (
        isinstance(local_window, bool) or not isinstance(local_window, int) or local_window < 1
    ):
        raise ValueError(f"local_window must be an integer >= 1 token, got {local_window!r}")
    if seq_len is not None and (not isinstance(seq_len, int) or seq_len < 1):
        raise ValueError(f"seq_len must be an integer >= 1, got {seq_len!r}")
    if any(chosen.values()) and local_window is None:
        if seq_len is None:
            raise ValueError("a schedule needs local_window (tokens) or seq_len to derive W = N/(2P²)")
        local_window = max(1, seq_len // (2 * P * P))
    m: Any = model
    base: Any = m.get_decoder() if hasattr(m, "get_decoder") else m.model
    already = [
        i for i, layer in enumerate(base.layers) if getattr(layer.self_attn, "iha_mixing", None) is not None
    ]
    if already or getattr(cfg, "iha", None):
        raise ValueError(
            f"this model is already patched with IHA (layers {already}); patching again would replace its "
            "trained mixing. Load a fresh model, or use iha_attn.from_pretrained for a saved IHA model"
        )
    rotary: Any = getattr(base, "rotary_emb", None)
    if rope_mode == "virtual" and rotary is None:
        raise ValueError("rope_mode='virtual' needs the model's rotary embedding (model.model.rotary_emb)")
    if rope_mode == "virtual" and getattr(rotary, "rope_type", "default") != "default":
        raise ValueError(
            f"rope_mode='virtual' supports the default RoPE only, not {rotary.rope_type!r} (its scaled "
            "frequencies/attention factor depend on the position range); use rope_mode='token'"
        )
    device = next(model.parameters()).device
    mixes = []
    for i, is_local in sorted(chosen.items()):
        attn = base.layers[i].self_attn
        mix = IHAMixing(H, Hkv, P, collapse=collapse, init=init, init_std=init_std, mask_mode=mask_mode).to(
            device
        )
        if rope_mode == "virtual":  # fp32 RoPE table, kept fp32 by IHAMixing under model.to(bf16)
            mix.register_buffer("inv_freq", rotary.inv_freq.detach().clone().float(), persistent=False)
        attn.iha_mixing = mix
        attn.iha_cfg = {
            "mask_mode": mask_mode,
            "rope_mode": rope_mode,
            "window": local_window if is_local else window,
            "backend": backend,
        }
        mixes.append(mix)
    cfg.iha = {  # saved by save_pretrained; iha_attn.from_pretrained rebuilds the exact patch from it
        "version": 1,
        "layers": sorted(chosen),
        "local_layers": sorted(i for i, loc in chosen.items() if loc),
        "P": P,
        "collapse": collapse,
        "mask_mode": mask_mode,
        "rope_mode": rope_mode,
        "window": window,
        "local_window": local_window if any(chosen.values()) else None,
        "backend": backend,
        "attn_name": name,
    }
    register_iha_attention(name)
    try:
        m.set_attn_implementation(name)
    except (ValueError, AttributeError, KeyError):
        cfg._attn_implementation = name
    return mixes


def iha_param_groups(model: nn.Module, lr: float, weight_decay: float = 0.1, mix_lr: float | None = None):
    """Optimizer groups: the model's weights, and IHA's α/R (fp32, no weight decay; DESIGN.md pitfall 12)."""
    mix_ids = {id(p) for m in model.modules() if isinstance(m, IHAMixing) for p in m.parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in mix_ids]
    mixp = [p for p in model.parameters() if id(p) in mix_ids]
    return [
        {"params": rest, "lr": lr, "weight_decay": weight_decay},
        {"params": mixp, "lr": mix_lr or lr, "weight_decay": 0.0},
    ]


def _checkpoint_tensors(path, wanted: set[str]) -> dict[str, torch.Tensor]:
    """Read the named tensors from a saved model folder (single or sharded safetensors)."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    root = Path(path)
    index = root / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({root / f for f in json.loads(index.read_text())["weight_map"].values()})
    elif (root / "model.safetensors").is_file():
        files = [root / "model.safetensors"]
    else:
        raise FileNotFoundError(f"no model.safetensors (or its index) in {str(path)!r}")
    out = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                if k in wanted:
                    out[k] = fh.get_tensor(k)
    return out


def from_pretrained(path, *, backend: str | None = None, **kwargs):
    """Load a model saved (``save_pretrained``) after `patch_model_with_iha` as the exact patched model.

    The IHA settings are read from the ``iha`` entry of its ``config.json``; the base weights are
    loaded by ``AutoModelForCausalLM.from_pretrained(path, **kwargs)``, the same layers are patched, and
    every saved α/R is copied in (a missing or extra IHA tensor raises). ``backend`` overrides the
    saved backend (e.g. ``"sdpa"`` on a machine without CUDA). α and R stay fp32 whatever ``dtype``.
    A plain ``AutoModelForCausalLM.from_pretrained`` would silently return standard attention.
    """
    from pathlib import Path

    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if not Path(path).is_dir():
        raise FileNotFoundError(f"{str(path)!r} is not a saved model folder")
    config = AutoConfig.from_pretrained(path)
    iha = getattr(config, "iha", None)
    if not isinstance(iha, dict) or iha.get("version") != 1:
        raise ValueError(
            f"{str(path)!r} has no usable 'iha' entry in its config.json (not saved from a model patched by "
            "iha_attn.hf.patch_model_with_iha); load it with AutoModelForCausalLM.from_pretrained"
        )
    del config.iha
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the α/R tensors are "unused" until the patch below re-attaches them
    try:
        model = AutoModelForCausalLM.from_pretrained(path, config=config, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    local = set(iha["local_layers"])
    patch_model_with_iha(
        model,
        layers={int(i): int(i) in local for i in iha["layers"]},
        P=iha["P"],
        collapse=iha["collapse"],
        mask_mode=iha["mask_mode"],
        rope_mode=iha["rope_mode"],
        init="normal",
        window=iha["window"],
        local_window=iha["local_window"],
        backend=backend or iha["backend"],
        name=iha.get("attn_name", ATTN_NAME),
    )
    names = {n for n, _ in model.named_parameters() if ".iha_mixing." in n}
    state = _checkpoint_tensors(path, names | {n.replace("model.", "", 1) for n in names})
    params = dict(model.named_parameters())
    missing = []
    with torch.no_grad():
        for n in sorted(names):
            t = state.get(n, state.get(n.replace("model.", "", 1)))
            if t is None:
                missing.append(n)
                continue
            if t.shape != params[n].shape:
                raise ValueError(f"{n}: saved shape {tuple(t.shape)} != patched {tuple(params[n].shape)}")
            params[n].copy_(t)
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks {len(missing)} IHA tensors (e.g. {missing[0]}): checkpoint is incomplete"
        )
    return model
