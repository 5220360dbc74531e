"""Grouped-query attention of a span against the *un-repeated* frozen K/V (issue 18, GQA).

transformers' eager and SDPA paths expand a GQA cache to all query heads (`repeat_kv`: a copy of the
K/V window ``n_rep`` times per layer, every step), and the fused SDPA backward computes gradients for
the (frozen) K and V as well. qTTT never trains K/V, so a span forward uses this attention instead:

* the query heads that share a K/V head are laid out as extra query rows,
  ``q (1, H, k, d) -> (1, H_kv, n_rep*k, d)`` (a copy of the *span's* queries only, k rows, not the
  T-long window), and multiplied against the K/V views of the frozen cache directly: no copy of K/V;
* the product is the explicit ``softmax(q Kᵀ · scale + mask) V`` of transformers' eager attention, so
  autograd computes the gradient of the query only (K/V are detached leaves that need none);
* the mask is the bottom-right causal mask of the frozen window (span token i at absolute position
  ``kv_len - k + i`` sees keys ``0 ... kv_len - k + i``), built here: batch 1, no padding.

What remains per step (put in `flops.account`): the score matrix ``H·k·kv_len`` floats per layer that
autograd keeps for the backward, and the span's own K/V projections that the decoder layer computes and
the frozen cache discards.

It is installed only for the span forwards (`span_attention(model)`), by switching the config's attention
implementation to the registered name below and back; decoding and the prefill use the model's own.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

NAME = "qtt_grouped_span"  # explicit softmax(q Kᵀ) V: gradients for the query only
NAME_SDPA = "qtt_grouped_span_sdpa"  # one fused SDPA call in the grouped layout (models loaded with sdpa)
_registered = False


def grouped_span_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
):
    """Attention of ``query (b, H, q, d)`` against ``key/value (b, H_kv, kv, d)`` without repeating K/V."""
    return _grouped(module, query, key, value, attention_mask, scaling, dropout, False, **kwargs)


def grouped_span_attention_sdpa(
    module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0, **kwargs
):
    """The same grouped layout through one `scaled_dot_product_attention` call (no score matrix kept;
    the fused backward still computes dK/dV of the un-repeated window, transient, discarded)."""
    return _grouped(module, query, key, value, attention_mask, scaling, dropout, True, **kwargs)


def _grouped(module, query, key, value, attention_mask, scaling, dropout, fused, **kwargs):
    if attention_mask is not None:
        raise RuntimeError("qTTT span attention builds its own causal mask; got one from the model")
    for name in ("softcap", "s_aux"):
        if kwargs.get(name) is not None:
            raise ValueError(f"qTTT's grouped span attention does not support {name!r} attention")
    window = kwargs.get("sliding_window")
    if window is not None and key.shape[2] > window:
        raise ValueError(
            f"sliding-window attention ({window}) over {key.shape[2]} cached keys is not supported by qTTT"
        )
    if key.requires_grad or value.requires_grad:
        raise RuntimeError("qTTT span attention expects the frozen (detached) K/V of the prefill cache")
    b, h, q_len, d = query.shape
    h_kv, kv_len = key.shape[1], key.shape[2]
    if h % h_kv:
        raise ValueError(f"{h} query heads are not a multiple of {h_kv} key/value heads")
    n_rep = h // h_kv
    if scaling is None:
        scaling = d**-0.5
    # query head j = g*n_rep + r reads K/V head g (transformers' repeat_kv order); rows (r, i) per group g
    qg = query.reshape(b, h_kv, n_rep * q_len, d)
    offset = kv_len - q_len
    if offset < 0:
        raise RuntimeError(f"span of {q_len} tokens against only {kv_len} cached keys")
    blocked = None
    if q_len > 1:
        i = torch.arange(q_len, device=query.device)[:, None]
        j = torch.arange(kv_len, device=query.device)[None, :]
        blocked = (j > i + offset).repeat(n_rep, 1)  # (n_rep*q, kv) bool: a few bytes per score
    if fused:
        out = torch.nn.functional.scaled_dot_product_attention(
            qg,
            key,
            value,
            attn_mask=None if blocked is None else ~blocked,
            dropout_p=dropout if module.training else 0.0,
            scale=scaling,
        )
        return out.reshape(b, h, q_len, d).transpose(1, 2).contiguous(), None
    scores = torch.matmul(qg, key.transpose(2, 3)) * scaling  # (b, H_kv, n_rep*q, kv)
    if blocked is not None:
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if dropout and module.training:
        probs = torch.nn.functional.dropout(probs, p=dropout, training=True)
    out = torch.matmul(probs, value)  # (b, H_kv, n_rep*q, d)
    out = out.reshape(b, h, q_len, d).transpose(1, 2).contiguous()
    weights = probs.reshape(b, h, q_len, kv_len) if kwargs.get("output_attentions") else None
    return out, weights


def _register() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, grouped_span_attention)
        AttentionInterface.register(NAME_SDPA, grouped_span_attention_sdpa)
        _registered = True


@contextmanager
def span_attention(model):
    """Use `grouped_span_attention` for the forwards inside the block (then the model's own again).

    The mask interface has no entry for this name, so transformers builds no mask (our function builds
    the bottom-right causal mask of the frozen window itself)."""
    _register()
    config = model.config
    old = config._attn_implementation
    config._attn_implementation = NAME_SDPA if old == "sdpa" else NAME
    try:
        yield
    finally:
        config._attn_implementation = old
