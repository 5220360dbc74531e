"""Configuration of XQuant / XQuant-CL (arXiv 2508.10395) and of the KIVI baselines.

Every knob maps to a statement of the paper or to a resolution written in DESIGN.md (§1.7 lists the
defaults); the README lists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Bit widths the paper evaluates (§4); 16 means "no quantization" (store X in the compute dtype).
SUPPORTED_BITS = (2, 3, 4, 8, 16)
MODES = ("auto", "mha", "gqa_latent")
BACKENDS = ("auto", "torch", "triton")
ROPE_STORES = ("auto", "positions", "cos_sin")


def _bits_of(bits: int | None) -> int:
    """A bit-width field's value (None means 16, lossless)."""
    return 16 if bits is None else bits


def _check_keep(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"keep_first_n must be an int >= 0, got {n!r}")


def _check_bits(name: str, bits) -> int:
    if bits is None:
        return 16
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(
            f"{name}={bits!r} is not supported; choose one of {SUPPORTED_BITS} (16 = no quantization)"
        )
    return bits


@dataclass
class XQuantConfig:
    """What XQuantCache stores and how.

    bits: 2/3/4/8, or 16 / None for lossless storage (the equality anchor of the tests).
    group_size: elements per quantization group (paper: 128). Per-token groups run along channels and
        must divide the channel count; per-channel groups run along 128 consecutive tokens.
    mode: "mha" caches X itself (per-token groups, §3.1); "gqa_latent" caches X·U_k (per-channel) and
        X·U_v (per-token) from an offline SVD of W_k, W_v (§3.3.1); "auto" picks latent when the model
        has fewer KV heads than query heads.
    residual_length: newest tokens kept unquantized (KIVI-style window, §4; 128 in generation, 0 for
        perplexity runs). Per-channel groups are only ever quantized whole (DESIGN.md pitfall 5).
    cross_layer: XQuant-CL (§3.2): layer i > base_layer caches Q(X_i - X̂_{i-1}).
    closed_loop: True = deltas against the previous layer's *reconstruction* (the paper's scheme);
        False = the open-loop ablation Q(X_i - X_{i-1}) kept to show error growth (DESIGN.md §1.4).
    base_layer: the CL base/accumulator layer (paper §4.3 uses index 2); stored as plain X at base_bits.
    base_bits: bits of the base layer (paper: 4).
    early_layers / early_bits: the first `early_layers` layers use `early_bits` (paper Table 4: 3 / 4).
    backend: "torch" reference, "triton" kernels (CUDA, or CPU under TRITON_INTERPRET=1), "auto".
    keep_first_n: the first N tokens of every sequence stay in full precision for good (attention
        sinks; not in the paper, DESIGN.md pitfall 7); quantization groups start after them.
    rope_store: "positions" keeps int32 positions and recomputes cos/sin with the model's rotary module
        (exact only for RoPE types whose cos/sin depend on the position alone; refused for "dynamic"
        NTK and "longrope"); "cos_sin" keeps the cos/sin the model used (exact for any RoPE variant,
        more bytes); "auto" (default) picks "positions" when it is exact, else "cos_sin".
    """

    bits: int | None = 4
    group_size: int = 128
    mode: str = "auto"
    residual_length: int = 128
    cross_layer: bool = False
    closed_loop: bool = True
    base_layer: int = 2
    base_bits: int | None = 4
    early_layers: int = 0
    early_bits: int | None = 4
    backend: str = "auto"
    rope_store: str = "auto"
    keep_first_n: int = 0

    def __post_init__(self):
        self.bits = _check_bits("bits", self.bits)
        self.base_bits = _check_bits("base_bits", self.base_bits)
        _check_keep(self.keep_first_n)
        self.early_bits = _check_bits("early_bits", self.early_bits)
        if not isinstance(self.group_size, int) or self.group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {self.group_size!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}; choose one of {MODES}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}; choose one of {BACKENDS}")
        if self.rope_store not in ROPE_STORES:
            raise ValueError(f"rope_store={self.rope_store!r}; choose one of {ROPE_STORES}")
        if self.residual_length < 0:
            raise ValueError(f"residual_length must be >= 0, got {self.residual_length}")
        if self.base_layer < 0 or self.early_layers < 0:
            raise ValueError("base_layer and early_layers must be >= 0")

    def layer_bits(self, layer_idx: int) -> int:
        """Bit width of layer `layer_idx` (early layers and the CL base layer are kept at higher precision)."""
        if self.cross_layer and layer_idx == self.base_layer:
            return _bits_of(self.base_bits)
        if layer_idx < self.early_layers:
            return _bits_of(self.early_bits)
        return _bits_of(self.bits)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class KIVIConfig:
    """KIVI-style KV quantization (per-channel K, per-token V), the paper's baseline.

    pre_rope=True is KIVI* (keys quantized before RoPE, the KVQuant fix the paper compares against);
    pre_rope=False is the original KIVI on post-RoPE keys.
    """

    bits: int | None = 2
    group_size: int = 128
    residual_length: int = 128
    pre_rope: bool = True
    early_layers: int = 0
    early_bits: int | None = 4
    rope_store: str = "auto"
    keep_first_n: int = 0
    backend: str = "auto"

    def __post_init__(self):
        self.bits = _check_bits("bits", self.bits)
        self.early_bits = _check_bits("early_bits", self.early_bits)
        _check_keep(self.keep_first_n)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}; choose one of {BACKENDS}")
        if not isinstance(self.group_size, int) or self.group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {self.group_size!r}")
        if self.residual_length < 0:
            raise ValueError(f"residual_length must be >= 0, got {self.residual_length}")
        if self.rope_store not in ROPE_STORES:
            raise ValueError(f"rope_store={self.rope_store!r}; choose one of {ROPE_STORES}")

    def layer_bits(self, layer_idx: int) -> int:
        return _bits_of(self.early_bits if layer_idx < self.early_layers else self.bits)

    def to_dict(self) -> dict:
        return asdict(self)
