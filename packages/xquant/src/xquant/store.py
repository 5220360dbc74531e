"""`TokenStore`: one cached stream of per-token vectors, packed-quantized prefix + full-precision window.

The newest tokens wait in a full-precision residual window (paper §4: "we leave the final residual
tokens unquantized (up to group size tokens), similar to the residual method in KIVI"). Flushes are
whole quantization units, oldest first, so streaming one token at a time produces exactly the codes
of quantizing the same tokens at once (DESIGN.md pitfall 5):
* per-token axis: every token beyond the newest `residual_length` is quantized;
* per-channel axis: whole groups of `group_size` tokens are quantized while the window is longer than
  `residual_length`; a 1-token per-channel group is never quantized (the VeloxQuant #162 no-op bug).
bits == 16 stores the values unquantized in their own dtype (the lossless anchor).
"""

from __future__ import annotations

import torch

from .quant import QTensor, concat, dequantize, packed_row_bytes, quantize


def _own(t: torch.Tensor) -> torch.Tensor:
    """`t` in storage of its own size (copied out of a larger storage, or as a non-contiguous view)."""
    if t.untyped_storage().nbytes() != t.numel() * t.element_size() or not t.is_contiguous():
        return t.clone(memory_format=torch.contiguous_format)
    return t


def compact(t: torch.Tensor | None) -> torch.Tensor | None:
    """`t` in storage of its own size: a slice or expanded view of a larger tensor is copied out, so a
    store never pins memory it does not use (issue 18: the window used to pin the whole prompt's X)."""
    if t is None:
        return None
    if t.numel() == 0:
        return None
    if t.untyped_storage().nbytes() != t.numel() * t.element_size() or not t.is_contiguous():
        return t.clone(memory_format=torch.contiguous_format)
    return t


def storage_nbytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (deduplicated by data pointer): what is really held."""
    seen: dict[tuple, int] = {}
    for t in tensors:
        if t is None:
            continue
        st = t.untyped_storage()
        seen[(st.device.type, st.data_ptr())] = st.nbytes()
    return sum(seen.values())


def flushed_tokens(total: int, bits: int, group_size: int, axis: str, residual_length: int) -> int:
    """How many of `total` tokens are quantized after streaming them (closed form of the flush rule)."""
    if bits == 16:
        return total
    if axis == "token":
        return max(0, total - residual_length)
    k = min(total // group_size, -(-(total - residual_length) // group_size))
    return max(0, k) * group_size


class TokenStore:
    """Packed codes of the quantized tokens + a full-precision window of the newest ones.

    The window may hold different values than what gets quantized (XQuant-CL quantizes a delta computed
    at flush time), hence the split `take_flush()` -> caller transforms -> `add()`.
    """

    def __init__(
        self,
        bits: int,
        group_size: int,
        axis: str,
        residual_length: int,
        quantize_fn=None,
        keep_first_n: int = 0,
    ):
        self.bits, self.group_size, self.axis, self.residual_length = bits, group_size, axis, residual_length
        #: the first `keep_first_n` tokens of every sequence stay in full precision for good (attention
        #: sinks, DESIGN.md pitfall 7 / issue 22.6); quantization groups start after them
        self.keep_first_n = keep_first_n
        self.head: torch.Tensor | None = None
        self.q: QTensor | None = None  # packed quantized prefix
        self.raw: torch.Tensor | None = None  # bits == 16: unquantized prefix
        self.window: torch.Tensor | None = None
        self._quantize = quantize_fn or quantize

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_quantized(self) -> int:
        if self.raw is not None:
            return self.raw.shape[-2]
        return 0 if self.q is None else self.q.tokens

    @property
    def n_window(self) -> int:
        return 0 if self.window is None else self.window.shape[-2]

    @property
    def n_head(self) -> int:
        return 0 if self.head is None else self.head.shape[-2]

    def __len__(self) -> int:
        return self.n_head + self.n_quantized + self.n_window

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor this store holds (sink head, packed codes, fp16 scale/zero, raw prefix, window)."""
        out = [] if self.q is None else [self.q.codes, self.q.scale, self.q.zero]
        return out + [t for t in (self.head, self.raw, self.window) if t is not None]

    def reset(self) -> None:
        self.head = self.q = self.raw = self.window = None

    def nbytes(self) -> int:
        """Bytes of the storages really held (not the views' sizes): see `storage_nbytes`."""
        return storage_nbytes(self.tensors())

    # -- writing -----------------------------------------------------------------------------
    def push(self, x: torch.Tensor) -> None:
        """Append new tokens ``[B, q, C]``: the first `keep_first_n` of the stream to the sink head,
        the rest to the full-precision window."""
        room = self.keep_first_n - self.n_head
        if room > 0 and self.n_quantized + self.n_window == 0:
            take = x[..., :room, :]
            self.head = compact(take) if self.head is None else torch.cat([self.head, take], dim=-2)
            x = x[..., room:, :]
            if x.shape[-2] == 0:
                return
        self.window = compact(x) if self.window is None else torch.cat([self.window, x], dim=-2)

    def take_flush(self, final: bool = False) -> torch.Tensor | None:
        """Pop the oldest window tokens that are due for quantization (all of them when `final`)."""
        n = self.n_window
        if n == 0:
            return None
        if final or self.bits == 16:
            k = n
        elif self.axis == "token":
            k = max(0, n - self.residual_length)
        else:
            k = 0
            while n - k >= self.group_size and n - k > self.residual_length:
                k += self.group_size
        if k == 0 or self.window is None:
            return None
        out, self.window = self.window[..., :k, :], compact(self.window[..., k:, :])
        return out

    def add(self, values: torch.Tensor, allow_partial: bool = False) -> None:
        """Quantize `values` ``[B, k, C']`` and append them to the quantized prefix."""
        if self.bits == 16:
            self.raw = compact(values) if self.raw is None else torch.cat([self.raw, values], dim=-2)
            return
        if self.axis == "channel" and self.q is not None and self.q.tokens % self.group_size:
            raise RuntimeError("per-channel store already ends in a partial group; it cannot grow")
        qt = self._quantize(values, self.bits, self.group_size, self.axis, allow_partial=allow_partial)
        self.q = concat(self.q, qt)

    # -- reading -----------------------------------------------------------------------------
    def dequant(self, dtype: torch.dtype) -> torch.Tensor | None:
        """The quantized prefix as a float tensor (None when empty)."""
        if self.raw is not None:
            return self.raw.to(dtype)
        return None if self.q is None else dequantize(self.q, dtype)

    def full(self, dtype: torch.dtype) -> torch.Tensor | None:
        """Every stored token in order: sink head, dequantized prefix, window (None when empty)."""
        parts = [p.to(dtype) for p in (self.head, self.dequant(dtype), self.window) if p is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)

    # -- cache API helpers -------------------------------------------------------------------
    def _map(self, fn) -> None:
        if self.q is not None:
            self.q = QTensor(
                fn(self.q.codes),
                fn(self.q.scale),
                fn(self.q.zero),
                self.q.bits,
                self.q.group_size,
                self.q.axis,
                self.q.channels,
            )
        for name in ("head", "raw", "window"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, fn(t))

    def index_batch(self, idx: torch.Tensor) -> None:
        self._map(lambda t: t.index_select(0, idx.to(t.device)))

    def repeat_batch(self, repeats: int) -> None:
        self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def check_crop(self, remove: int) -> None:
        """Raise (without changing anything) unless `crop_tokens(remove)` can succeed."""
        if remove > len(self):
            raise ValueError(f"cannot remove {remove} tokens from a store of {len(self)}")
        rest = remove - self.n_window
        if rest > 0 and self.q is not None and self.axis == "channel":
            raise NotImplementedError(
                f"cannot crop {remove} tokens: {rest} of them are inside per-channel quantized groups "
                f"(only the {self.n_window} newest tokens are in the full-precision window); use "
                "residual_length >= the rollback length"
            )

    def crop_tokens(self, remove: int) -> None:
        """Drop the newest `remove` tokens (window first, then per-token codes; per-channel groups stay whole)."""
        self.check_crop(remove)
        w = min(remove, self.n_window)
        if w and self.window is not None:
            self.window = compact(self.window[..., : self.n_window - w, :])
        rest = remove - w
        if rest <= 0:
            return
        nq = min(rest, self.n_quantized)
        if self.raw is not None and nq:
            self.raw = compact(self.raw[..., : self.raw.shape[-2] - nq, :])
        elif self.q is not None and nq:
            q, keep = self.q, self.q.tokens - nq
            self.q = None
            if keep:
                self.q = QTensor(
                    _own(q.codes[..., :keep, :]),
                    _own(q.scale[..., :keep, :]),
                    _own(q.zero[..., :keep, :]),
                    q.bits,
                    q.group_size,
                    q.axis,
                    q.channels,
                )
        rest -= nq
        if rest > 0 and self.head is not None:
            self.head = compact(self.head[..., : self.n_head - rest, :])


def stream_bytes(
    batch: int,
    tokens: int,
    channels: int,
    bits: int,
    group_size: int,
    axis: str,
    residual_length: int,
    window_elt: int,
    window_channels: int | None = None,
    keep_first_n: int = 0,
    raw_elt: int | None = None,
) -> int:
    """Analytic bytes of one TokenStore holding `tokens` tokens (used to check `nbytes()` honestly).

    `window_elt` is the element size of the full-precision window and sink head, `raw_elt` that of a
    bits=16 prefix (default: the same)."""
    window_channels = channels if window_channels is None else window_channels
    head = min(tokens, keep_first_n)
    head_bytes = batch * head * window_channels * window_elt
    tokens -= head
    nq = flushed_tokens(tokens, bits, group_size, axis, residual_length)
    nw = tokens - nq
    if bits == 16:
        return head_bytes + batch * tokens * channels * (window_elt if raw_elt is None else raw_elt)
    codes = nq * packed_row_bytes(channels, bits)
    if axis == "token":
        meta = nq * (channels // group_size) * 4
    else:
        meta = (nq // group_size) * channels * 4
    return head_bytes + batch * (codes + meta + nw * window_channels * window_elt)
