"""`XQuantCache`: a transformers Cache that stores quantized X (or its SVD latents / CL deltas) and
rematerializes K and V at every step (arXiv 2508.10395, §3).

Layer roles (chosen per layer by `XQuantCache.from_model`):
* ``x``      MHA XQuant (§3.1): X quantized per-token; K = X̂W_k (+b, k_norm) then RoPE, V = X̂W_v (+b).
* ``latent`` GQA XQuant (§3.3.1): X·U_k per-channel, X·U_v per-token; K = (X̂U_k)·Σ_kB_kᵀ, V likewise.
* ``cl``     XQuant-CL (§3.2, Fig. 4): base layer stores X (at base_bits); later layers store closed-loop
             deltas Q(X_i − X̂_{i−1}) (per-token); X̂_i = X̂_{i−1} + ΔX̂_i via a transient accumulator.
             On GQA models the deltas live in the U_kv latent of [W_k | W_v] (§3.3.2).
Layers before the CL base layer are stored like ``x`` / ``latent`` at their own bit width.
"""

from __future__ import annotations

import torch

from .base import HookedCache, HookedLayer, SharedState
from .config import XQuantConfig
from .kernels import get_backend
from .store import TokenStore, storage_nbytes
from .svd import Latent, cached_factors


def _cat(*parts: torch.Tensor | None) -> torch.Tensor:
    """Concatenate the non-empty parts along tokens (at least one must be present)."""
    ts = [p for p in parts if p is not None]
    if not ts:
        raise RuntimeError("nothing stored (internal error)")
    return ts[0] if len(ts) == 1 else torch.cat(ts, dim=-2)


def _is_half(dtype: torch.dtype) -> bool:
    return dtype in (torch.float16, torch.bfloat16)


class XQuantLayer(HookedLayer):
    """One decoder layer's XQuant storage (see module doc for the roles)."""

    lk: Latent | None = None
    lv: Latent | None = None
    lkv: Latent | None = None

    def __init__(
        self,
        spec,
        state: SharedState,
        config: XQuantConfig,
        role: str,
        bits: int,
        latent: bool,
        svd_path=None,
    ):
        super().__init__(spec, state)
        self.config, self.role, self.bits, self.latent = config, role, bits, latent
        g, r, n0 = config.group_size, config.residual_length, config.keep_first_n
        self.backend = get_backend(config.backend, spec.k_proj.weight.device)
        qfn = self.backend.quantize
        dtype = spec.k_proj.weight.dtype
        #: lossless (bits=16) latents of a half-precision model are kept in fp32 with fp32 factors, so
        #: the only rounding left is the final cast to the model dtype (issue 22.5; DESIGN.md §1.5)
        self.fdtype = torch.float32 if bits == 16 and _is_half(dtype) else dtype
        if role == "x":
            self.xs = TokenStore(bits, g, "token", r, qfn, keep_first_n=n0)
        elif role == "latent":
            kp, vp = spec.k_proj, spec.v_proj
            self.lk = cached_factors(kp, [kp.weight], self.fdtype, keep_m=True, svd_path=svd_path)
            self.lv = cached_factors(kp, [vp.weight], self.fdtype, keep_m=True, svd_path=svd_path)
            self.ks = TokenStore(bits, g, "channel", r, qfn, keep_first_n=n0)
            self.vs = TokenStore(bits, g, "token", r, qfn, keep_first_n=n0)
        elif role in ("cl_base", "cl_delta"):
            if latent:  # GQA-CL: shared subspace of [W_k | W_v] (§3.3.2)
                ws = [spec.k_proj.weight, spec.v_proj.weight]  # CL uses U_kv only: M is not kept
                self.lkv = cached_factors(spec.k_proj, ws, self.fdtype, keep_m=False, svd_path=svd_path)
            self.xs = TokenStore(bits, g, "token", r, qfn, keep_first_n=n0)
        else:
            raise ValueError(f"unknown layer role {role!r}")

    def stores(self) -> list[TokenStore]:
        return [self.ks, self.vs] if self.role == "latent" else [self.xs]

    def _reset_stores(self) -> None:
        for s in self.stores():
            s.reset()

    # -- write + read -------------------------------------------------------------------------
    def write_and_read(self, cap, key_states, value_states, final: bool):
        x = cap.x
        if x is None or x.shape[:2] != (key_states.shape[0], key_states.shape[-2]):
            raise RuntimeError(f"layer {self.idx}: captured X does not match the keys passed to update()")
        spec, dt = self.spec, x.dtype
        if self.role == "x":
            s = self.xs
            s.push(x)
            f = s.take_flush(final)
            if f is not None:
                s.add(f, allow_partial=final)
            return self.backend.remat_x(s, spec, dt)
        if self.role == "latent":
            assert (
                self.lk is not None
                and self.lv is not None
                and self.lk.m is not None
                and self.lv.m is not None
            )
            xf = x.to(self.fdtype)
            self.ks.push(xf @ self.lk.u)
            self.vs.push(xf @ self.lv.u)
            for s in (self.ks, self.vs):
                f = s.take_flush(final)
                if f is not None:
                    s.add(f, allow_partial=final)
            k_lin, v_lin = self.backend.remat_latent(self, self.fdtype)
            bk, bv = spec.k_proj.bias, spec.v_proj.bias
            if bk is not None:
                k_lin = k_lin + bk.to(k_lin.dtype)
            if bv is not None:
                v_lin = v_lin + bv.to(v_lin.dtype)
            # cast before k_norm, as the model applies k_norm to its projection in the model dtype
            return spec.finish_k(k_lin.to(dt)), spec.split_heads(v_lin.to(dt))
        xhat = self._write_cl(x, final)
        if self.lkv is not None and self.fdtype != dt:
            # lossless GQA-CL in half precision: X̂ != X off the column space of W_kv, so project in
            # fp32 and round once (exact up to that rounding; DESIGN.md §1.6)
            w, b = spec.kv_weight(torch.float32)
            kv = xhat @ w + (b if b is not None else 0)
            k_lin, v_lin = kv.to(dt).split(spec.kv_dim, dim=-1)
            return spec.finish_k(k_lin.contiguous()), spec.split_heads(v_lin.contiguous())
        xhat = xhat.to(dt)
        return spec.remat_k(xhat), spec.remat_v(xhat)

    def _write_cl(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        """XQuant-CL write (closed loop, §3.2) and the reconstruction X̂_i of all stored tokens.

        The accumulator is fp32 whatever the model dtype (a transient buffer), so bits=16 chains
        reproduce X exactly in half precision and quantized chains do not add rounding per layer."""
        st, s = self.state, self.xs
        u = None if self.lkv is None else self.lkv.u
        s.push(x)
        f = s.take_flush(final)
        n = 0 if f is None else f.shape[-2]
        if self.role == "cl_base":
            prev = None
        else:
            if st.acc_layer != self.idx - 1 or st.acc is None:
                raise RuntimeError(
                    f"XQuant-CL layer {self.idx} ran after layer {st.acc_layer}; CL needs every layer in "
                    "order within a forward (layer skipping breaks the delta chain)"
                )
            prev = st.acc
            if prev.shape[-2] != s.n_quantized + n:
                raise RuntimeError("XQuant-CL layers flushed different token counts (internal error)")
        if f is not None:
            f32 = f.float()
            if prev is None:
                target = f32
            elif self.config.closed_loop:
                target = f32 - prev[..., prev.shape[-2] - n :, :]  # against the reader's reconstruction
            else:
                assert st.prev_true is not None
                target = f32 - st.prev_true  # open-loop ablation: against the true previous X
            target = target if u is None else target @ u.float()
            s.add(target, allow_partial=final)  # fp32: a bits=16 chain keeps the deltas exactly
        acc = self.backend.cl_up(s, u, prev, torch.float32)  # prev + deq(Δ) [@ U_kvᵀ], fused on Triton
        if acc is None:
            acc = x.new_zeros(x.shape[0], 0, x.shape[-1], dtype=torch.float32)
        st.acc, st.acc_layer, st.prev_true = acc, self.idx, None if f is None else f.float()
        if self.idx == st.last_layer:
            # the accumulator is a transient per-step buffer (DESIGN.md §1.4): hold nothing between steps
            st.acc = st.prev_true = None
        return _cat(
            None if s.head is None else s.head.float(), acc, None if s.window is None else s.window.float()
        )


class XQuantCache(HookedCache):
    """Drop-in `transformers` cache for XQuant / XQuant-CL.

    >>> cache = XQuantCache.from_model(model, XQuantConfig(bits=4, group_size=64))
    >>> out = model.generate(**inputs, past_key_values=cache, max_new_tokens=32)
    >>> cache.nbytes(), cache.memory_report()
    """

    @classmethod
    def from_model(
        cls, model, config: XQuantConfig | None = None, simulate: bool = False, svd_path=None
    ) -> XQuantCache:
        """Build the cache for `model` and attach its capture hooks.

        GQA SVD factors are computed once per model weights and shared by every cache of the model
        in this process; `svd_path` (a folder, or True for the shared paperworks cache) also keeps
        them on disk across processes (see `xquant.svd`).

        simulate=True makes it a teacher-forced fake-quantization cache for one forward pass: every
        token's K/V (not only past ones) comes from the quantized store (the paper's PPL protocol).
        """
        config = config or XQuantConfig()
        specs, state = cls._prepare(model, config)
        n_layers = len(specs)
        gqa = specs[0].num_kv_heads < specs[0].num_heads
        latent = config.mode == "gqa_latent" or (config.mode == "auto" and gqa)
        if config.cross_layer and config.base_layer >= n_layers:
            raise ValueError(f"base_layer={config.base_layer} but the model has only {n_layers} layers")
        layers = []
        for spec in specs:
            i = spec.layer_idx
            bits = config.layer_bits(i)
            if config.cross_layer and i == config.base_layer:
                role = "cl_base"
            elif config.cross_layer and i > config.base_layer:
                role = "cl_delta"
            else:
                role = "latent" if latent else "x"
            _check_groups(spec, role, latent, config, bits)
            layer = XQuantLayer(spec, state, config, role, bits, latent, svd_path=svd_path)
            layer.backend.check_layer(layer)  # kernel constraints on this device, before any work
            layers.append(layer)
        cache = cls(model, config, layers, state)
        state.simulate = simulate
        return cache

    def factors(self) -> list[Latent]:
        """The distinct SVD factor objects (`Latent`) this cache's layers use."""
        out: list[Latent] = []
        for layer in self.layers:
            for name in ("lk", "lv", "lkv"):
                lat = getattr(layer, name, None)
                if lat is not None and all(lat is not o for o in out):
                    out.append(lat)
        return out

    def factor_nbytes(self) -> int:
        """Bytes of the SVD factors (U, M) used by the latent / GQA-CL layers, storages deduplicated.

        Reported apart from `nbytes()`: they are per model, not per token (shared by every cache
        of the model in this process, see `xquant.svd`)."""
        return storage_nbytes([t for lat in self.factors() for t in lat.tensors()])

    def memory_report(self) -> dict:
        """Measured bytes, tokens, and the ratio to an FP16 KV cache of the same tokens."""
        from .accounting import fp16_kv_bytes

        tokens = self.get_seq_length()
        b = self.state.batch_size or 0
        fp16 = fp16_kv_bytes(self.layers, b, tokens)
        measured = self.nbytes()
        return {
            "tokens": tokens,
            "batch": b,
            "measured_bytes": measured,
            "fp16_kv_bytes": fp16,
            "ratio_vs_fp16_kv": measured / fp16 if fp16 else float("nan"),
            "factor_bytes": self.factor_nbytes(),
        }


def _check_groups(spec, role, latent, config, bits) -> None:
    """Per-token groups must tile the channels exactly (issue 3, robustness)."""
    if bits == 16:
        return
    g = config.group_size
    if role == "latent":
        dims = {"X·U_v latent (per-token)": min(spec.hidden_size, spec.kv_dim)}
    elif latent and role.startswith("cl"):
        dims = {"X·U_kv latent (per-token)": min(spec.hidden_size, 2 * spec.kv_dim)}
    else:
        dims = {"hidden size (per-token X groups)": spec.hidden_size}
    for what, c in dims.items():
        if c % g:
            raise ValueError(f"group_size={g} does not divide the {what} = {c}; choose a divisor of {c}")
