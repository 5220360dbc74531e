"""Analytic memory accounting and the paper's roofline break-even analysis (§3.4, DESIGN.md §5.1-5.2).

Two conventions are reported: *paper* (codes + one fp16 scale and zero per group, nothing else:
b' = b + 32/G bits per element) and *measured* (`cache.nbytes()`: real tensor bytes incl. the
full-precision window and the RoPE store). `expected_xquant_nbytes` is the closed form of the latter,
which the tests compare against `nbytes()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import KIVIConfig, XQuantConfig


def fp16_kv_bytes(layers, batch: int, tokens: int) -> int:
    """Bytes of an FP16 KV cache (K and V, 2 bytes each) for these layers' specs."""
    return sum(2 * layer.spec.kv_dim * 2 for layer in layers) * batch * tokens


def paper_bits_per_element(bits: int, group_size: int) -> float:
    """b' = b + 32/G (fp16 scale + fp16 zero per group); 16 for unquantized storage."""
    return 16.0 if bits == 16 else bits + 32.0 / group_size


def paper_ratio_xquant(config: XQuantConfig, hidden: int, kv_dim: int, n_layers: int) -> float:
    """Cache size normalized to FP16 KV, paper convention (Table 1/4 'KV' column)."""
    gqa = kv_dim < hidden
    latent = config.mode == "gqa_latent" or (config.mode == "auto" and gqa)
    total = 0.0
    for i in range(n_layers):
        b = paper_bits_per_element(config.layer_bits(i), config.group_size)
        if config.cross_layer and i >= config.base_layer:
            ch = min(hidden, 2 * kv_dim) if latent else hidden
        else:
            ch = 2 * min(hidden, kv_dim) if latent else hidden
        total += ch * b
    return total / (n_layers * 2 * kv_dim * 16)


def paper_ratio_kivi(config: KIVIConfig, n_layers: int) -> float:
    return sum(paper_bits_per_element(config.layer_bits(i), config.group_size) for i in range(n_layers)) / (
        16 * n_layers
    )


def expected_xquant_nbytes(cache, batch: int, tokens: int) -> int:
    """Closed-form bytes of an XQuantCache after streaming `tokens` tokens of a batch of `batch`.

    Sums `stream_bytes` per store of each layer (window in the compute dtype, codes packed, fp16
    metadata) plus the RoPE store (int32 positions, or cos+sin in the compute dtype).
    """
    from .store import stream_bytes  # torch: imported only here, so the analytic CLI paths stay light

    cfg = cache.config
    total = 0
    for layer in cache.layers:
        spec = layer.spec
        elt = spec.k_proj.weight.element_size()
        r, g, b, n0 = cfg.residual_length, cfg.group_size, layer.bits, cfg.keep_first_n
        if layer.role == "x":
            total += stream_bytes(batch, tokens, spec.hidden_size, b, g, "token", r, elt, keep_first_n=n0)
        elif layer.role == "latent":
            rk, rv = layer.lk.rank, layer.lv.rank
            lelt = layer.fdtype.itemsize  # fp32 latents for bits=16 in half precision (issue 22.5)
            total += stream_bytes(batch, tokens, rk, b, g, "channel", r, lelt, keep_first_n=n0)
            total += stream_bytes(batch, tokens, rv, b, g, "token", r, lelt, keep_first_n=n0)
        else:
            ch = spec.hidden_size if layer.lkv is None else layer.lkv.rank
            # window and sink head hold X in the model dtype; a bits=16 delta prefix is fp32
            total += stream_bytes(batch, tokens, ch, b, g, "token", r, elt, window_channels=spec.hidden_size,
                                  keep_first_n=n0, raw_elt=4)  # fmt: skip
    rope = cache.state.rope
    if rope.kind == "positions":
        total += batch * tokens * 4
    else:
        hd = cache.layers[0].spec.head_dim
        total += 2 * batch * tokens * hd * cache.layers[0].spec.k_proj.weight.element_size()
    return total


# -- roofline (paper §3.4, eq. 3/4) --------------------------------------------------------------
@dataclass
class Hardware:
    name: str
    tflops: float  # dense 16-bit peak, TFLOP/s
    tbps: float  # HBM bandwidth, TB/s

    @property
    def ridge(self) -> float:
        """FLOPs per byte at which compute and memory time are equal."""
        return self.tflops * 1e12 / (self.tbps * 1e12)


HARDWARE = {
    "paper": Hardware("paper (H100-PCIe-like)", 756.0, 2.0),
    "h100-sxm": Hardware("H100 SXM", 989.0, 3.35),
    "h200": Hardware("H200", 989.0, 4.8),
}


def breakeven_context(
    hidden: int,
    bits: float,
    hw: Hardware,
    groups: int = 1,
    batch: int = 1,
    weight_bytes_per_layer: float | None = None,
) -> float:
    """Context length l* beyond which rematerialization stops hiding under the weight stream.

    Per layer and decode step: remat FLOPs 4·l·d_lat² (d_lat = d/g; MHA g = 1) times the batch, memory
    (e/8)·l·d_lat per sequence plus the layer's weights. Setting FLOPs/bytes = ridge P (paper eq. 3/4):
    l* = P·W / (B·(4·d_lat² − P·d_lat·e/8)). Defaults W = 24·d² bytes (Llama-2-7B, MHA) or
    26·d² + 4·d_lat² (Llama-3.1-8B, GQA), as in the paper. `bits` is e (paper uses 2; b' for metadata).
    Returns inf when remat never becomes the bottleneck.
    """
    d_lat = hidden / groups
    if weight_bytes_per_layer is None:
        weight_bytes_per_layer = 24 * hidden**2 if groups == 1 else 26 * hidden**2 + 4 * d_lat**2
    p = hw.ridge
    denom = batch * (4 * d_lat**2 - p * d_lat * bits / 8)
    return float("inf") if denom <= 0 else p * weight_bytes_per_layer / denom
