"""`InterleavedHeadAttention`: a drop-in causal self-attention ``nn.Module`` (paper §4, DESIGN.md §7)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .cache import IHAKVCache
from .config import IHAConfig
from .functional import iha_attention, iha_decode_attention
from .mixing import IHAMixing, keep_fp32_apply
from .rope import apply_rope, cos_sin, inv_freq, virtual_positions


class _HeadRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # float64 stays float64
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def packed_mask_and_positions(cu_seqlens: torch.Tensor, batch: int, n: int):
    """``cu_seqlens`` (``[0, l1, l1+l2, ..., T]``, flash-attn's varlen convention) -> the block-diagonal
    token mask ``[1, 1, T, T]`` (True = same document) and per-document positions ``[1, T]``."""
    if batch != 1:
        raise ValueError(f"packed input (cu_seqlens) is one row [1, total_tokens, D], got batch {batch}")
    cu = torch.as_tensor(cu_seqlens)
    if cu.dim() != 1 or cu.numel() < 2 or cu.dtype.is_floating_point or cu.dtype == torch.bool:
        raise ValueError(
            f"cu_seqlens must be a 1-D integer tensor [0, ..., {n}], got {tuple(cu.shape)} {cu.dtype}"
        )
    cl = cu.tolist()
    if cl[0] != 0 or cl[-1] != n or any(b <= a for a, b in zip(cl, cl[1:])):
        raise ValueError(f"cu_seqlens must rise strictly from 0 to the {n} packed tokens, got {cl}")
    cu = cu.to(torch.long)
    tok = torch.arange(n, device=cu.device)
    doc = torch.searchsorted(cu[1:], tok, right=True)  # document id of every token
    pos = tok - cu[doc]
    same = doc[:, None] == doc[None, :]
    return same[None, None], pos[None]


class InterleavedHeadAttention(nn.Module):
    """Self-attention with P pseudo-heads per head interleaved into an N·P virtual sequence.

    1. q, k, v = x W_Q, x W_K, x W_V (as MHA; optional per-head QK-RMSNorm as in Qwen3)
    2. pseudo-heads q̃/k̃/ṽ = α-mixtures of all heads, interleaved at t = n·P+p (§4, Alg. 4)
    3. RoPE at virtual (n·P+p) or token (n) positions, standard attention per head over N·P tokens
    4. collapse the P pseudo-outputs with R, then W_O

    ``forward(x, attention_mask=None, position_ids=None, past_key_value=None, use_cache=False, cache=None,
    cu_seqlens=None)`` returns ``(y, cache)`` (``cache=`` is an alias of ``past_key_value=``); the cache
    (`IHAKVCache`) stores the original-size K/V and re-mixes on the fly. ``cu_seqlens`` (packed varlen
    training input): ``x [1, T, D]`` holds documents at ``cu_seqlens[i]:cu_seqlens[i+1]``; each attends
    only within itself, with positions restarting at 0 (equal to running them one by one).
    """

    def __init__(self, config: IHAConfig, layer_idx: int = 0):
        super().__init__()
        c = self.config = config
        self.layer_idx = layer_idx
        H, Hkv, d, dv, out = c.dims()
        self.H, self.Hkv, self.d, self.dv = H, Hkv, d, dv
        self.q_proj = nn.Linear(c.hidden_size, H * d, bias=c.bias)
        self.k_proj = nn.Linear(c.hidden_size, Hkv * d, bias=c.bias)
        self.v_proj = nn.Linear(c.hidden_size, Hkv * dv, bias=c.bias)
        self.o_proj = nn.Linear(H * dv, out, bias=c.bias)
        self.q_norm: _HeadRMSNorm | None = _HeadRMSNorm(d) if c.qk_norm else None
        self.k_norm: _HeadRMSNorm | None = _HeadRMSNorm(d) if c.qk_norm else None
        self.mixing = IHAMixing(
            H,
            Hkv,
            c.num_pseudo_heads,
            collapse=c.collapse,
            mix_v=c.mix_v,
            init=c.init,
            init_std=c.init_std,
            mask_mode=c.mask_mode,
        )
        if c.rope_mode != "none":
            self.register_buffer("inv_freq", inv_freq(d, c.rope_theta), persistent=False)
        self.inv_freq: torch.Tensor

    def _apply(self, fn, recurse=True):  # the RoPE table stays fp32 under .to(bf16); α/R via IHAMixing
        return keep_fp32_apply(self, fn, recurse, names=("inv_freq",))

    # ------------------------------------------------------------------ helpers
    def extra_param_count(self) -> int:
        """Parameters added to MHA (4H²P for global collapse with H = Hkv; DESIGN.md §1.4)."""
        return self.mixing.extra_param_count()

    def _project(self, x: torch.Tensor):
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.H, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.Hkv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.Hkv, self.dv).transpose(1, 2)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    @staticmethod
    def _token_mask(attention_mask, n_q: int, n_kv: int, batch: int):
        """Accept a [B, S] padding mask (1/True = keep) or a bool [B, 1|H, Nq, S] mask."""
        if attention_mask is None:
            return None
        m = attention_mask
        if m.dim() == 2:
            if m.shape != (batch, n_kv):
                raise ValueError(
                    f"2-D attention_mask must be [batch, {n_kv}] (all cached tokens), got {tuple(m.shape)}"
                )
            m = m.bool()[:, None, None, :].expand(batch, 1, n_q, n_kv)
        elif m.dim() == 4:
            if m.dtype != torch.bool:
                raise TypeError(
                    "4-D attention_mask must be bool (True = attend); additive float masks are ambiguous"
                )
        else:
            raise ValueError(f"attention_mask must be 2-D [B, S] or 4-D bool, got {m.dim()}-D")
        return m

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_value: IHAKVCache | None = None,
        use_cache: bool = False,
        cache: IHAKVCache | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ):
        if cu_seqlens is not None:  # packed varlen batch: one row of concatenated documents
            if past_key_value is not None or cache is not None or use_cache:
                raise ValueError("cu_seqlens (packed training input) cannot be combined with a KV cache")
            if attention_mask is not None or position_ids is not None:
                raise ValueError(
                    "cu_seqlens sets the attention mask and the per-document positions itself; "
                    "do not pass attention_mask or position_ids with it"
                )
            am, pos = packed_mask_and_positions(cu_seqlens, x.shape[0], x.shape[1])
            attention_mask, position_ids = am.to(x.device), pos.to(x.device)
        if cache is not None:  # `cache=` is the newer spelling (transformers >= 5.2x) of `past_key_value=`
            if past_key_value is not None and past_key_value is not cache:
                raise ValueError("pass the KV cache as cache= or past_key_value=, not both")
            past_key_value = cache
        if x.dim() != 3 or x.shape[-1] != self.config.hidden_size:
            raise ValueError(f"expected x [batch, tokens, {self.config.hidden_size}], got {tuple(x.shape)}")
        c, mix = self.config, self.mixing
        b, n, _ = x.shape
        P = c.num_pseudo_heads
        past = 0 if past_key_value is None else past_key_value.get_seq_length(self.layer_idx)
        if position_ids is None:
            position_ids = torch.arange(past, past + n, device=x.device)
        position_ids = position_ids.expand(b, n) if position_ids.dim() == 1 else position_ids
        q, k, v = self._project(x)
        freqs, rdt = torch.empty(0), torch.float32  # freqs is only read when rope_mode != "none"
        if c.rope_mode != "none":
            freqs = self.inv_freq
            if x.dtype == torch.float64:  # float64 inputs get float64 RoPE tables, not fp32 ones
                rdt = torch.float64
                freqs = inv_freq(self.d, c.rope_theta, device=x.device, dtype=rdt)
        if c.rope_mode == "token":  # rotate before mixing: mixing commutes with a same-position rotation
            cq, sq = cos_sin(position_ids, freqs, dtype=rdt)
            q, k = apply_rope(q, cq, sq), apply_rope(k, cq, sq)
        if use_cache and past_key_value is None:
            past_key_value = IHAKVCache()
        kpos = position_ids
        if past_key_value is not None:
            k, v, kpos = past_key_value.update(k, v, position_ids, self.layer_idx)
        tmask = self._token_mask(attention_mask, n, k.shape[2], b)
        if n == 1 and past > 0 and c.softmax == "softmax" and not (self.training and c.attn_dropout):
            # decode: one token against the original-size cache, no P-fold pseudo-K/V (DESIGN.md §5.3)
            virt = c.rope_mode == "virtual"
            o = iha_decode_attention(
                q,
                k,
                v,
                mix.alpha_q,
                mix.alpha_k,
                mix.alpha_v,
                mix.R,
                collapse_mode=c.collapse,
                mask_mode=c.mask_mode,
                window=c.window,
                scale=1.0 / math.sqrt(self.d),
                token_mask=tmask,
                freqs=freqs if virt else None,
                q_pos=position_ids * P if virt else None,
                k_base=kpos * P if virt else None,
                use_kernel=None if c.backend == "triton" else False,
            )
        else:
            rope_q = rope_k = None
            if c.rope_mode == "virtual":
                rope_q = cos_sin(virtual_positions(position_ids, P), freqs, dtype=rdt)
                rope_k = cos_sin(virtual_positions(kpos, P), freqs, dtype=rdt)
            o = iha_attention(
                q,
                k,
                v,
                mix.alpha_q,
                mix.alpha_k,
                mix.alpha_v,
                mix.R,
                collapse_mode=c.collapse,
                mask_mode=c.mask_mode,
                window=c.window,
                backend=c.backend,
                softmax=c.softmax,
                token_mask=tmask,
                rope_q=rope_q,
                rope_k=rope_k,
                dropout=c.attn_dropout,
                training=self.training,
            )
        y = self.o_proj(o.reshape(b, n, self.H * self.dv))
        return y, (past_key_value if use_cache else None)

    # ------------------------------------------------------------------ utilities
    @torch.no_grad()
    def fold_p1(self) -> dict[str, torch.Tensor]:
        """For P = 1: plain-MHA weights with α folded into W_Q/W_K/W_V and R into W_O (DESIGN.md pitfall 5).

        Returns ``{"q", "k", "v", "o"}`` weight matrices (nn.Linear layout). P = 1 IHA is exactly MHA with
        these weights, i.e. mixing without interleaving adds no expressivity.
        """
        c, mix = self.config, self.mixing
        if c.num_pseudo_heads != 1:
            raise ValueError(f"fold_p1 needs P = 1, this layer has P = {c.num_pseudo_heads}")
        if self.q_norm is not None or c.bias:
            raise ValueError("fold_p1 does not support qk_norm or biases")

        def fold_in(w, alpha, hs, dh):  # rows of W are [m, d]; new head h = Σ_m α[m,h] W_m
            return torch.einsum("mh,mdi->hdi", alpha[:, :, 0], w.view(hs, dh, -1)).reshape(hs * dh, -1)

        H, Hkv = self.H, self.Hkv
        wq = fold_in(self.q_proj.weight, mix.alpha_q, H, self.d)
        wk = fold_in(self.k_proj.weight, mix.alpha_k, Hkv, self.d)
        wv = (
            self.v_proj.weight
            if mix.alpha_v is None
            else fold_in(self.v_proj.weight, mix.alpha_v, Hkv, self.dv)
        )
        # y = Σ_h O_h W_O[:, h] with O_h = Σ_h' R[h,h'] o_h'  ->  W_O'[:, h'] = Σ_h R[h,h'] W_O[:, h]
        R = mix.R if c.collapse == "global" else torch.diag(mix.R[:, 0])
        wo = self.o_proj.weight.view(-1, H, self.dv)
        wo = torch.einsum("hk,ohd->okd", R, wo).reshape(-1, H * self.dv)
        return {"q": wq, "k": wk, "v": wv, "o": wo}
