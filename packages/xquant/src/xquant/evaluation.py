"""Evaluation helpers shared by the `xquant-eval` CLI and the benchmark: perplexity windows, measured
memory, per-layer K/V reconstruction error, cross-layer similarity, decode latency, greedy agreement."""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from .accounting import paper_ratio_kivi, paper_ratio_xquant
from .adapters import attention_specs
from .config import KIVIConfig, XQuantConfig
from .hooks import CaptureHooks
from .simulate import make_cache, simulate_loss

BOS_ID = 257


def byte_windows(text: str, seq_len: int, n: int) -> torch.Tensor:
    """`n` evenly spaced byte-token windows [n, seq_len] of `text`, BOS first (the shared byte tokenizer)."""
    ids = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()
    if len(ids) < seq_len + n:
        raise ValueError(f"text has {len(ids)} bytes, too short for {n} windows of {seq_len}")
    starts = torch.linspace(0, len(ids) - seq_len - 1, n).long()
    w = torch.stack([ids[s : s + seq_len] for s in starts.tolist()])
    w[:, 0] = BOS_ID
    return w


def token_windows(ids: torch.Tensor, seq_len: int, n: int | None = None) -> torch.Tensor:
    """Non-overlapping windows [N, seq_len] of a 1-D id tensor (for tokenizer-encoded datasets)."""
    k = len(ids) // seq_len
    if k == 0:
        raise ValueError(f"only {len(ids)} tokens, fewer than seq_len={seq_len}")
    w = ids[: k * seq_len].view(k, seq_len)
    return w if n is None else w[:n]


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, config=None, batch_size: int = 8) -> float:
    """Teacher-forced perplexity with K/V of every token from the cache method (paper protocol)."""
    total = 0.0
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size].to(model.device)
        total += simulate_loss(model, chunk, config) * len(chunk)
    return math.exp(total / len(windows))


def paper_ratio(model, config) -> float:
    """Paper-convention cache size / FP16 KV (codes + fp16 scale/zero per group only)."""
    if config is None:
        return 1.0
    s = attention_specs(model)[0]
    n = len(attention_specs(model))
    if isinstance(config, KIVIConfig):
        return paper_ratio_kivi(config, n)
    return paper_ratio_xquant(config, s.hidden_size, s.kv_dim, n)


@torch.no_grad()
def measured_ratio(model, config, ids: torch.Tensor) -> tuple[int, float]:
    """Real bytes held after a prefill of `ids` [B, T] (residual window as configured) and the ratio to FP16 KV."""
    specs = attention_specs(model)
    fp16 = sum(2 * s.kv_dim * 2 for s in specs) * ids.numel()
    if config is None:
        return fp16, 1.0
    with make_cache(model, config) as cache:
        model(input_ids=ids.to(model.device), past_key_values=cache, use_cache=True)
        n = cache.nbytes()
    return n, n / fp16


@torch.no_grad()
def layer_errors(model, ids: torch.Tensor, config) -> list[dict]:
    """Per-layer relative error ‖K̂−K‖/‖K‖, ‖V̂−V‖/‖V‖ of the cache's K/V vs the exact ones from the same X."""
    if config is None:
        return []
    errs: dict[int, list] = {}

    def cb(i, k, v, kh, vh):
        errs.setdefault(i, []).append(
            (((kh - k).norm() / k.norm()).item(), ((vh - v).norm() / v.norm()).item())
        )

    cache = make_cache(model, config, simulate=True)
    cache.state.on_simulated = cb
    try:
        model(input_ids=ids.to(model.device), past_key_values=cache, use_cache=True)
    finally:
        cache.detach()
    return [
        {"layer": i, "k_rel_err": sum(e[0] for e in v) / len(v), "v_rel_err": sum(e[1] for e in v) / len(v)}
        for i, v in sorted(errs.items())
    ]


def _tok_cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(0, -2), b.flatten(0, -2), dim=-1).mean().item()


@torch.no_grad()
def cross_layer_similarity(model, ids: torch.Tensor) -> list[dict]:
    """cos(X_i, X_{i+1}) vs cos(K_i, K_{i+1}) (pre-RoPE) and cos(V_i, V_{i+1}), per token, averaged (paper Fig. 3)."""
    specs = attention_specs(model)
    hooks = CaptureHooks({s.layer_idx: s.module for s in specs})
    try:
        model(input_ids=ids.to(model.device))
        xs = [hooks.slots[s.layer_idx].x for s in specs]
    finally:
        hooks.remove()
    ks = [s.remat_k(x).transpose(1, 2).flatten(-2) for s, x in zip(specs, xs)]
    vs = [s.remat_v(x).transpose(1, 2).flatten(-2) for s, x in zip(specs, xs)]
    rows = []
    for i in range(len(specs) - 1):
        dx = xs[i + 1] - xs[i]
        rng = (dx.amax(-1) - dx.amin(-1)) / (xs[i + 1].amax(-1) - xs[i + 1].amin(-1))
        rows.append(
            {
                "layers": f"{i}->{i + 1}",
                "cos_X": _tok_cos(xs[i], xs[i + 1]),
                "cos_K": _tok_cos(ks[i], ks[i + 1]),
                "cos_V": _tok_cos(vs[i], vs[i + 1]),
                "range_dX_over_X": rng.mean().item(),
            }
        )
    return rows


@torch.no_grad()
def greedy_agreement(model, prompt: torch.Tensor, config, new_tokens: int) -> float:
    """Fraction of greedy tokens equal to the full-precision cache's (real decode path, not simulation)."""
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=256)
    ref = model.generate(prompt, past_key_values=DynamicCache(config=model.config), **kw)
    cache = make_cache(model, config)
    try:
        out = model.generate(prompt, past_key_values=cache, **kw)
    finally:
        if hasattr(cache, "detach"):
            cache.detach()
    p = prompt.shape[1]
    return (out[:, p:] == ref[:, p:]).float().mean().item()


@torch.no_grad()
def decode_latency(model, config, context: int, steps: int, batch: int = 1, progress: bool = False) -> float:
    """Mean ms per decode step after a random prefill of `context` tokens (CPU numbers are directional only)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (batch, context), generator=g).to(model.device)
    cache = make_cache(model, config)
    try:
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        nxt = out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in tqdm(range(steps), disable=not progress, desc=f"decode @{context}", leave=False):
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
            nxt = out.logits[:, -1:].argmax(-1)
        if torch.cuda.is_available() and model.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps * 1e3
    finally:
        if hasattr(cache, "detach"):
            cache.detach()


__all__ = [
    "XQuantConfig",
    "byte_windows",
    "token_windows",
    "perplexity",
    "paper_ratio",
    "measured_ratio",
    "layer_errors",
    "cross_layer_similarity",
    "greedy_agreement",
    "decode_latency",
]
