"""Compute backends: the plain-torch reference and Triton kernels (paper notes §5.3).

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
    def remat_x(store, spec, dtype):
        deq = store.dequant(dtype)
        xhat = (
            store.window
            if deq is None
            else (deq if store.window is None else torch.cat([deq, store.window], -2))
        )
        return spec.remat_k(xhat), spec.remat_v(xhat)


class TritonBackend(TorchBackend):
    """Triton quantize-and-pack (per-token) and fused dequantize+matmul for MHA X rematerialization."""

    name = "triton"

    @staticmethod
    def check_layer(layer) -> None:
        """Refuse at construction what the kernels would refuse at the first decode (issue 18).

        Per-token stores go through `quantize_pack` (`tl.arange` over one group: a power-of-two
        group size >= 8); MHA X layers also through `dequant_matmul` (K-blocks of 16/32 must tile a
        group: a multiple of 16)."""
        g = layer.config.group_size
        where = f"layer {layer.idx} ({layer.role}, {layer.bits}-bit) on the Triton backend"
        token_stores = [s for s in layer.stores() if s.axis == "token" and s.bits != 16]
        if token_stores and (g < 8 or g & (g - 1)):
            raise ValueError(
                f"group_size={g} cannot be served by the Triton quantize kernel for {where}: it needs a "
                "power of two >= 8 (e.g. 32, 64, 128); use such a group size or backend='torch'"
            )
        if layer.role == "x" and layer.bits != 16 and g % 16:
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
    def remat_x(store, spec, dtype):
        from .triton_dequant_matmul import dequant_matmul

        if store.q is None:
            return TorchBackend.remat_x(store, spec, dtype)
        w_kv, bias = spec.kv_weight()  # [d, 2 d_kv]: one GEMM, W read once; concatenated once per model
        kv = dequant_matmul(store.q, w_kv, bias=bias, out_dtype=dtype)
        if store.window is not None:
            kv = torch.cat([kv, torch.nn.functional.linear(store.window, w_kv.T, bias)], -2)
        k_lin, v_lin = kv.split(spec.kv_dim, dim=-1)
        return spec.finish_k(k_lin.contiguous()), spec.split_heads(v_lin.contiguous())


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
