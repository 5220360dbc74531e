"""Forward pre-hooks that capture each attention layer's input X and its positions at write time.

HF attention calls ``past_key_values.update(key, value, layer_idx)`` without the X it projected and,
in 5.x, without cos/sin (DESIGN.md pitfall 1). A pre-hook on every `self_attn` stashes
``hidden_states`` (= post-input_layernorm X, paper §3.1) plus ``position_ids`` / ``position_embeddings``
so the cache's `update` can store X and later re-apply RoPE with the positions the model really used
(left padding, continued generation). The hooks hold only a weak reference to the cache state.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

#: RoPE types whose cos/sin at a position depend only on that position (not on the other positions of
#: the call or on earlier calls), so `rope_store="positions"` can recompute them exactly. "dynamic"
#: (NTK) and "longrope" change their frequencies with the sequence length seen in a call, so keys
#: written earlier were rotated with other frequencies: those need the stored cos/sin.
STATIC_ROPE_TYPES = ("default", "linear", "yarn", "llama3", "proportional")


def rope_type_of(rotary: nn.Module | None) -> str | None:
    if rotary is None:
        return None
    rt = getattr(rotary, "rope_type", "default")
    return rt if isinstance(rt, str) else repr(rt)


def resolve_rope_store(requested: str, rotary: nn.Module | None) -> str:
    """ "auto" -> "positions" for static RoPE types, else "cos_sin"; an explicit "positions" on a
    sequence-length-dependent RoPE type is refused (it would silently give wrong keys)."""
    if rotary is None:
        return "cos_sin"  # nothing to recompute with: keep what the model used
    rt = rope_type_of(rotary)
    static = rt in STATIC_ROPE_TYPES
    if requested == "auto":
        return "positions" if static else "cos_sin"
    if requested == "positions" and not static:
        raise ValueError(
            f"rope_store='positions' cannot reproduce RoPE type {rt!r}: its frequencies depend on the "
            "sequence length seen at each call, so keys must keep the cos/sin they were written with; "
            "use rope_store='cos_sin' or 'auto'"
        )
    return requested


class Captured:
    """What a pre-hook saw for one layer in the current forward."""

    __slots__ = ("x", "position_ids", "cos", "sin")

    def __init__(self, x, position_ids, cos, sin):
        self.x, self.position_ids, self.cos, self.sin = x, position_ids, cos, sin


class CaptureHooks:
    """Registers pre-hooks on attention modules; `slots[layer_idx]` holds the latest Captured."""

    def __init__(self, modules: dict[int, nn.Module]):
        self.slots: dict[int, Captured] = {}
        #: when bound (`bind(cache)`), X is captured only for forwards that pass *this* cache: a
        #: `use_cache=False` forward or one with another cache leaves nothing behind (issue 18)
        self.cache_ref: weakref.ReferenceType | None = None
        ref = weakref.ref(self)
        self.handles = []
        for idx, mod in modules.items():
            self.handles.append(mod.register_forward_pre_hook(_make_hook(ref, idx), with_kwargs=True))

    def pop(self, layer_idx: int) -> Captured:
        try:
            return self.slots.pop(layer_idx)
        except KeyError:
            raise RuntimeError(
                f"no captured X for layer {layer_idx}: the cache's hooks are not attached to this model "
                "(build the cache with XQuantCache.from_model(model, ...) on the model that runs it)"
            ) from None

    def bind(self, cache) -> None:
        self.cache_ref = weakref.ref(cache)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.slots.clear()


def _make_hook(ref, idx: int):
    def hook(module, args, kwargs):
        owner = ref()
        if owner is None:
            return None
        key = "past_key_values" if "past_key_values" in kwargs else "cache" if "cache" in kwargs else None
        if owner.cache_ref is not None and key is not None:  # `cache=`: the newer transformers spelling
            if kwargs[key] is None or kwargs[key] is not owner.cache_ref():
                owner.slots.pop(idx, None)  # not a forward into this cache: keep nothing
                return None
        x = args[0] if args else kwargs.get("hidden_states")
        pe = kwargs.get("position_embeddings")
        cos, sin = pe if pe is not None else (None, None)
        owner.slots[idx] = Captured(x, kwargs.get("position_ids"), cos, sin)
        return None

    return hook


class RopeStore:
    """Per-token RoPE information shared by all layers (written once per forward, by the first layer).

    "positions": int32 position ids, cos/sin recomputed by the model's rotary module when needed
    (bitwise what the model computed for default RoPE); "cos_sin": the captured cos/sin themselves.
    """

    def __init__(self, kind: str, rotary: nn.Module | None):
        if kind == "positions" and rotary is None:
            kind = "cos_sin"
        self.kind, self.rotary = kind, rotary
        self.pos: torch.Tensor | None = None
        self.cos: torch.Tensor | None = None
        self.sin: torch.Tensor | None = None

    def __len__(self) -> int:
        t = self.pos if self.kind == "positions" else self.cos
        return 0 if t is None else t.shape[1]

    def append(self, cap: Captured, batch: int, q_len: int) -> None:
        if self.kind == "positions":
            pos = cap.position_ids
            if pos is None:
                if cap.cos is None:
                    raise RuntimeError("attention received neither position_ids nor position_embeddings")
                self.kind = "cos_sin"
                return self.append(cap, batch, q_len)
            pos = pos.expand(batch, q_len).to(torch.int32, copy=True).contiguous()
            self.pos = pos if self.pos is None else torch.cat([self.pos, pos], 1)
        else:
            if cap.cos is None:
                raise RuntimeError("rope_store='cos_sin' needs position_embeddings passed to the attention")
            cos = cap.cos.expand(batch, q_len, -1).contiguous().clone()
            sin = cap.sin.expand(batch, q_len, -1).contiguous().clone()
            self.cos = cos if self.cos is None else torch.cat([self.cos, cos], 1)
            self.sin = sin if self.sin is None else torch.cat([self.sin, sin], 1)

    def cos_sin(self, like: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [B, end-start, hd] for stored tokens start..end, in like's dtype."""
        if self.kind == "positions":
            if self.rotary is None or self.pos is None:
                raise RuntimeError("the RoPE store holds no positions (nothing was written)")
            return self.rotary(like, self.pos[:, start:end].long())
        if self.cos is None or self.sin is None:
            raise RuntimeError("the RoPE store holds no cos/sin (nothing was written)")
        return self.cos[:, start:end].to(like.dtype), self.sin[:, start:end].to(like.dtype)

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.pos, self.cos, self.sin) if t is not None]

    def nbytes(self) -> int:
        from .store import storage_nbytes

        return storage_nbytes(self.tensors())

    def check_crop(self, n: int) -> None:
        if n > len(self):
            raise ValueError(f"cannot remove {n} tokens: the RoPE store holds {len(self)}")

    def _map(self, fn) -> None:
        for name in ("pos", "cos", "sin"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, fn(t))

    def fork(self) -> RopeStore:
        """A copy with its own tensors; the rotary module is shared."""
        new = RopeStore(self.kind, self.rotary)
        new.pos, new.cos, new.sin = (None if t is None else t.clone() for t in (self.pos, self.cos, self.sin))
        return new

    def index_batch(self, idx):
        self._map(lambda t: t.index_select(0, idx.to(t.device)))

    def repeat_batch(self, n):
        self._map(lambda t: t.repeat_interleave(n, dim=0))

    def crop_tokens(self, n):
        self.check_crop(n)
        self._map(lambda t: t[:, : t.shape[1] - n].clone())

    def reset(self):
        self.pos = self.cos = self.sin = None
