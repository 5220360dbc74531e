"""KIVI-style KV-cache quantization baselines through the same Cache API (paper's comparison, §4).

K is quantized per-channel (groups of `group_size` tokens), V per-token, newest tokens in a
full-precision window (KIVI). KIVI* (pre_rope=True, the paper's baseline, from KVQuant) quantizes
keys *before* RoPE: the post-RoPE keys the model hands to `update` are un-rotated with the captured
cos/sin, stored, and re-rotated on read.
"""

from __future__ import annotations

from .adapters import apply_rope, invert_rope
from .base import HookedCache, HookedLayer
from .config import KIVIConfig
from .kernels import get_backend
from .store import TokenStore


class KIVILayer(HookedLayer):
    def __init__(self, spec, state, config: KIVIConfig, bits: int):
        super().__init__(spec, state)
        self.config, self.bits = config, bits
        g, r, n0 = config.group_size, config.residual_length, config.keep_first_n
        self.backend = get_backend(config.backend, spec.k_proj.weight.device)
        qfn = self.backend.quantize
        self.ks = TokenStore(bits, g, "channel", r, qfn, keep_first_n=n0)
        self.vs = TokenStore(bits, g, "token", r, qfn, keep_first_n=n0)

    def stores(self) -> list[TokenStore]:
        return [self.ks, self.vs]

    def _reset_stores(self) -> None:
        for s in self.stores():
            s.reset()

    def write_and_read(self, cap, key_states, value_states, final: bool):
        b, h, q, hd = key_states.shape
        k = key_states
        if self.config.pre_rope:
            if cap.cos is None:
                raise RuntimeError("KIVI* needs the attention's position_embeddings to undo RoPE")
            k = invert_rope(k, cap.cos, cap.sin)
        self.ks.push(k.transpose(1, 2).reshape(b, q, h * hd))
        self.vs.push(value_states.transpose(1, 2).reshape(b, q, h * hd))
        for s in (self.ks, self.vs):
            f = s.take_flush(final)
            if f is not None:
                s.add(f, allow_partial=final)
        dt = key_states.dtype
        kk = self.backend.full(self.ks, dt)  # fused unpack+dequantize on the Triton backend
        vv = self.backend.full(self.vs, dt)
        t = kk.shape[1]
        kk = kk.view(b, t, h, hd).transpose(1, 2)
        vv = vv.view(b, t, h, hd).transpose(1, 2)
        if not self.config.pre_rope:
            # post-RoPE keys are stored: undo RoPE here so the shared skeleton can re-apply it
            cos, sin = self.state.rope.cos_sin(kk, 0, t)
            kk = invert_rope(kk, cos, sin)
        return kk, vv


class KIVICache(HookedCache):
    """KIVI / KIVI* baseline cache: ``KIVICache.from_model(model, KIVIConfig(bits=2))``."""

    @classmethod
    def from_model(cls, model, config: KIVIConfig | None = None, simulate: bool = False) -> KIVICache:
        config = config or KIVIConfig()
        specs, state = cls._prepare(model, config)
        layers = []
        for spec in specs:
            bits = config.layer_bits(spec.layer_idx)
            if bits != 16 and spec.kv_dim % config.group_size:
                raise ValueError(
                    f"group_size={config.group_size} does not divide the KV width {spec.kv_dim} "
                    "(per-token V groups)"
                )
            layer = KIVILayer(spec, state, config, bits)
            layer.backend.check_layer(layer)
            layers.append(layer)
        cache = cls(model, config, layers, state)
        state.simulate = simulate
        return cache


__all__ = ["KIVICache", "apply_rope"]
