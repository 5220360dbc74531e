"""`IHAConfig`: every choice the paper leaves open, validated up front (DESIGN.md §1.4, §6, §7)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

COLLAPSES = ("global", "per_head")
MASK_MODES = ("flat_causal", "token_causal", "none")
ROPE_MODES = ("virtual", "token", "none")
INITS = ("identity_noise", "mha_exact", "normal")
BACKENDS = ("sdpa", "eager", "flex", "triton")
SOFTMAXES = ("softmax", "linear")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"IHAConfig.{name}={value!r} is not supported; choose one of {allowed}")


@dataclass
class IHAConfig:
    """Configuration of one Interleaved Head Attention layer.

    * ``num_pseudo_heads`` is P; every head gets P pseudo-queries/keys/values built as mixtures of all
      heads (paper §4, α ∈ R^{H×H×P}).
    * ``collapse`` picks R: ``"global"`` (R ∈ R^{H×HP}, §4.1, gives the paper's 4H²P extra parameters)
      or ``"per_head"`` (R ∈ R^{H×P}, the third parties' "Algorithm 1" reading).
    * ``mask_mode``: ``"flat_causal"`` (causal over the N·P virtual sequence, paper-literal, FA-friendly),
      ``"token_causal"`` (virtual key t_k visible iff t_k//P <= t_q//P) or ``"none"`` (bidirectional).
    * ``rope_mode``: ``"virtual"`` (positions n·P+p as in the paper), ``"token"`` (every pseudo of token n
      at position n; keeps exact MHA inclusion) or ``"none"``.
    * ``window``: sliding window in *tokens* W (``None`` = global). In virtual units a query sees the last
      W·P virtual keys (flat) or the last W tokens' keys (token-causal); the paper's local layers use
      W = N/(2P²) (App. C).
    * ``init``: ``"identity_noise"`` (α = identity + N(0, init_std), R averages each head's own pseudos;
      the noise breaks the symmetric fixed point, DESIGN.md pitfall 4), ``"mha_exact"`` (layer == MHA; requires
      rope_mode != virtual) or ``"normal"``.
    * ``out_features``: width of W_O's output (default ``hidden_size``; the synthetic tasks read out
      wider or narrower than the input).
    * ``backend``: ``"sdpa"``, ``"eager"`` (explicit softmax, also linear attention), ``"flex"``
      (FlexAttention; CPU inference only) or ``"triton"`` (own kernels; CUDA or TRITON_INTERPRET=1).
    """

    hidden_size: int
    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    v_head_dim: int | None = None
    num_pseudo_heads: int = 2
    collapse: str = "global"
    mask_mode: str = "flat_causal"
    rope_mode: str = "virtual"
    rope_theta: float = 10000.0
    window: int | None = None
    mix_v: bool = True
    init: str = "identity_noise"
    init_std: float = 0.02
    backend: str = "sdpa"
    softmax: str = "softmax"
    bias: bool = False
    qk_norm: bool = False
    attn_dropout: float = 0.0
    out_features: int | None = None

    def __post_init__(self) -> None:
        if self.num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {self.num_heads}")
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        if self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads != 0:
            raise ValueError(
                f"num_heads={self.num_heads} is not divisible by num_kv_heads={self.num_kv_heads} "
                "(GQA needs every KV head shared by the same number of query heads)"
            )
        if self.head_dim is None:
            if self.hidden_size % self.num_heads != 0:
                raise ValueError(
                    f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; "
                    "pass head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_heads
        if self.out_features is None:
            self.out_features = self.hidden_size
        if self.v_head_dim is None:
            self.v_head_dim = self.head_dim
        if not isinstance(self.num_pseudo_heads, int) or self.num_pseudo_heads < 1:
            raise ValueError(f"num_pseudo_heads (P) must be an integer >= 1, got {self.num_pseudo_heads!r}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be None (global) or >= 1 token, got {self.window}")
        _choice("collapse", self.collapse, COLLAPSES)
        _choice("mask_mode", self.mask_mode, MASK_MODES)
        _choice("rope_mode", self.rope_mode, ROPE_MODES)
        _choice("init", self.init, INITS)
        _choice("backend", self.backend, BACKENDS)
        _choice("softmax", self.softmax, SOFTMAXES)
        if self.rope_mode != "none" and self.head_dim % 2:  # head_dim is set above
            raise ValueError(f"RoPE needs an even head_dim, got {self.head_dim}")
        if self.init == "mha_exact" and self.rope_mode == "virtual" and self.num_pseudo_heads > 1:
            raise ValueError(
                "init='mha_exact' cannot be exact with rope_mode='virtual' (virtual positions n·P+p change "
                "the RoPE phases, DESIGN.md pitfall 3); use rope_mode='token' or 'none'"
            )
        if self.softmax == "linear" and self.backend != "eager":
            raise ValueError(f"softmax='linear' (theory tests) needs backend='eager', not {self.backend!r}")

    @property
    def P(self) -> int:  # noqa: N802 - the paper's symbol
        return self.num_pseudo_heads

    def dims(self) -> tuple[int, int, int, int, int]:
        """Resolved ``(num_heads, num_kv_heads, head_dim, v_head_dim, out_features)`` (no ``None`` left)."""
        hkv, d, dv, out = self.num_kv_heads, self.head_dim, self.v_head_dim, self.out_features
        if hkv is None or d is None or dv is None or out is None:  # only before __post_init__ ran
            raise ValueError("IHAConfig dimensions are not resolved")
        return self.num_heads, hkv, d, dv, out

    def extra_param_count(self) -> int:
        """Parameters IHA adds to MHA: 3·H²·P mixing (Q, K, V; KV mixing within Hkv for GQA) + R."""
        h, hkv, _, _, _ = self.dims()
        p = self.num_pseudo_heads
        mix = h * h * p + (hkv * hkv * p) * (2 if self.mix_v else 1)
        r = h * h * p if self.collapse == "global" else h * p
        return mix + r

    def to_dict(self) -> dict:
        return asdict(self)
