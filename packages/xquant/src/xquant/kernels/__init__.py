"""Compute backends: the plain-torch reference and Triton kernels (DESIGN.md §5.3).

`get_backend("auto", device)` returns the Triton backend on CUDA and the torch reference otherwise;
asking for "triton" on a device Triton cannot serve raises (issue 3, robustness) instead of silently
falling back. On CPU, Triton runs only under ``TRITON_INTERPRET=1`` (the test suite's mode).
"""

from __future__ import annotations

import os

import torch

from ..quant import quantize as torch_quantize
from .reference import dequant_matmul_ref, quantize_pack_ref


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


class TorchBackend:
    """Reference: dequantize to the compute dtype, then the model's own projections."""

    name = "torch"

    @staticmethod
    def quantize(x, bits, group_size, axis, allow_partial=False):
        return torch_quantize(x, bits, group_size, axis, allow_partial=allow_partial)

    @staticmethod
    def check_layer(layer) -> None:
        """The torch reference serves every configuration `XQuantConfig` accepts."""

    @staticmethod
    def full(store, dtype, add=None):
        """Every stored token of `store` in `dtype` (sink head, dequantized codes, window); with `add`
        ([B, n_quantized, C]) the dequantized part is returned as `add + deq` (the CL accumulator)."""
        if add is None:
            return store.full(dtype)
        deq = store.dequant(dtype)
        return add if deq is None else add + deq

    @staticmethod
    def project(store, w, bias, dtype):
        """`full(store) @ w (+ bias)` for a [C, N] weight: the latent and X rematerializations."""
        y = store.full(dtype) @ w.to(dtype)
        return y if bias is None else y + bias.to(dtype)

    @classmethod
    def remat_x(cls, store, spec, dtype):
        xhat = store.full(dtype)
        return spec.remat_k(xhat), spec.remat_v(xhat)

    @classmethod
    def remat_latent(cls, layer, dtype):
        """Linear K and V (no bias) from the latent stores: (X̂U_k)·M_k, (X̂U_v)·M_v (§3.3.1)."""
        return cls.project(layer.ks, layer.lk.m, None, dtype), cls.project(layer.vs, layer.lv.m, None, dtype)

    @classmethod
    def cl_up(cls, store, u, prev, dtype):
        """CL read: `prev + deq(Δ) [@ uᵀ]` over the quantized tokens (fp32 accumulator)."""
        if u is None:
            return cls.full(store, dtype, add=prev) if prev is not None else store.dequant(dtype)
        deq = store.dequant(dtype)
        if deq is None:
            return prev
        rec = deq @ u.to(dtype).T
        return rec if prev is None else prev + rec


class TritonBackend(TorchBackend):
    """Triton kernels on every remat path (issue 22.4): per-token quantize-and-pack; fused
    dequantize+matmul from packed codes for MHA X (against [W_k | W_v] concatenated once), GQA latents
    (per-channel X·U_k, per-token X·U_v against M), GQA-CL deltas (against U_kvᵀ, accumulator added in
    the epilogue); fused dequantize(+add) for KIVI and MHA-CL deltas. Full-precision parts (sink head,
    window) are plain GEMMs."""

    name = "triton"

    @staticmethod
    def check_layer(layer) -> None:
        """Refuse at construction what the kernels would refuse at the first decode (issue 18).

        Per-token stores go through `quantize_pack` (`tl.arange` over one group: a power-of-two
        group size >= 8) and, read back through the fused GEMM, K-blocks of 16/32 must tile a group
        (a multiple of 16)."""
        g = layer.config.group_size
        where = f"layer {layer.idx} ({getattr(layer, 'role', 'kv')}, {layer.bits}-bit) on the Triton backend"
        token_stores = [s for s in layer.stores() if s.axis == "token" and s.bits != 16]
        if token_stores and (g < 8 or g & (g - 1)):
            raise ValueError(
                f"group_size={g} cannot be served by the Triton quantize kernel for {where}: it needs a "
                "power of two >= 8 (e.g. 32, 64, 128); use such a group size or backend='torch'"
            )
        if token_stores and g % 16:
            raise ValueError(
                f"group_size={g} cannot be served by the fused dequant-matmul kernel for {where}: it "
                "needs a multiple of 16; use group_size >= 16 or backend='torch'"
            )

    @staticmethod
    def quantize(x, bits, group_size, axis, allow_partial=False):
        if axis != "token" or bits == 16:
            return torch_quantize(x, bits, group_size, axis, allow_partial=allow_partial)
        from .triton_pack import quantize_pack

        return quantize_pack(x, bits, group_size)

    @staticmethod
    def _servable(q) -> bool:
        return q is not None and not (q.axis == "channel" and q.tokens % q.group_size)

    @classmethod
    def full(cls, store, dtype, add=None):
        from .triton_dequant_matmul import dequantize_fused

        q = store.q
        if not cls._servable(q):
            return TorchBackend.full(store, dtype, add)
        deq = dequantize_fused(q, out_dtype=dtype, add=add)
        if add is not None:
            return deq
        return torch.cat([t.to(dtype) for t in (store.head, deq, store.window) if t is not None], -2)

    @classmethod
    def project(cls, store, w, bias, dtype):
        from .triton_dequant_matmul import dequant_matmul

        q = store.q
        if not cls._servable(q):
            return TorchBackend.project(store, w, bias, dtype)
        w = w.to(dtype)
        b = None if bias is None else bias.to(dtype)
        parts = []
        if store.head is not None:
            parts.append(torch.nn.functional.linear(store.head.to(dtype), w.T, b))
        parts.append(dequant_matmul(q, w, bias=b, out_dtype=dtype))
        if store.window is not None:
            parts.append(torch.nn.functional.linear(store.window.to(dtype), w.T, b))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -2)

    @classmethod
    def remat_x(cls, store, spec, dtype):
        if not cls._servable(store.q):
            return TorchBackend.remat_x(store, spec, dtype)
        w_kv, bias = spec.kv_weight()  # [d, 2 d_kv]: one GEMM, W read once; concatenated once per model
        kv = cls.project(store, w_kv, bias, dtype)
        k_lin, v_lin = kv.split(spec.kv_dim, dim=-1)
        return spec.finish_k(k_lin.contiguous()), spec.split_heads(v_lin.contiguous())

    @classmethod
    def cl_up(cls, store, u, prev, dtype):
        from .triton_dequant_matmul import dequant_matmul, dequantize_fused

        q = store.q
        if not cls._servable(q):
            return TorchBackend.cl_up(store, u, prev, dtype)
        if u is None:
            return dequantize_fused(q, out_dtype=dtype, add=prev)
        return dequant_matmul(q, u.to(dtype).T, out_dtype=dtype, add=prev)


def get_backend(name: str, device: torch.device | str):
    """Resolve "auto" | "torch" | "triton" for tensors on `device`."""
    device = torch.device(device)
    if name == "torch":
        return TorchBackend
    if name == "auto":
        return TritonBackend if device.type == "cuda" and triton_available() else TorchBackend
    if name == "triton":
        if not triton_available():
            raise RuntimeError("backend='triton' requested but triton is not installed")
        if device.type == "cuda" or (device.type == "cpu" and _interpret()):
            return TritonBackend
        raise RuntimeError(
            f"backend='triton' cannot serve a model on {device}: Triton kernels need CUDA "
            "(or TRITON_INTERPRET=1 on CPU for testing); use backend='torch' or 'auto'"
        )
    raise ValueError(f"unknown backend {name!r}")


__all__ = ["get_backend", "dequant_matmul_ref", "quantize_pack_ref", "TorchBackend", "TritonBackend"]
