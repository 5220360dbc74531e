"""Machinery shared by XQuantCache and KIVICache: hooks, RoPE store, batch checks, Cache API plumbing."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from .adapters import AttnSpec, apply_rope, attention_specs, rotary_module
from .hooks import CaptureHooks, RopeStore, resolve_rope_store
from .store import TokenStore, storage_nbytes


class SharedState:
    """State every layer of one cache sees: the hooks' captures, the RoPE store, the CL accumulator."""

    def __init__(self, specs: Sequence[AttnSpec], rope_kind: str, rotary):
        self.specs = list(specs)
        self.hooks = CaptureHooks({s.layer_idx: s.module for s in specs})
        self.rope = RopeStore(resolve_rope_store(rope_kind, rotary), rotary)
        self.first_layer = min(s.layer_idx for s in specs)
        self.last_layer = max(s.layer_idx for s in specs)
        self.batch_size: int | None = None
        self.simulate = False
        self.simulated = False
        #: optional callback(layer_idx, k_exact, v_exact, k_hat, v_hat) in simulate mode (benchmarks)
        self.on_simulated = None
        # XQuant-CL transient accumulator (DESIGN.md §1.4 ambiguity 1: rebuilt every step, not stored)
        self.acc: torch.Tensor | None = None
        self.acc_layer: int | None = None
        self.prev_true: torch.Tensor | None = None

    def fork(self) -> SharedState:
        """A state with its own hooks on the same modules and a copy of the RoPE store (no CL transients:
        those live within one forward)."""
        new = copy.copy(self)
        new.hooks = CaptureHooks({s.layer_idx: s.module for s in self.specs})
        new.rope = self.rope.fork()
        new.acc = new.acc_layer = new.prev_true = None
        return new

    def check_batch(self, b: int) -> None:
        if self.batch_size is None:
            self.batch_size = b
        elif b != self.batch_size:
            raise ValueError(
                f"this cache holds a batch of {self.batch_size} sequences but was called with batch size {b}; "
                "create a new cache for a different batch (or use batch_select_indices / batch_repeat_interleave)"
            )


class HookedLayer(CacheLayerMixin):
    """Base layer: lazy init, sizes, and the write-then-read `update` skeleton."""

    is_sliding = False

    @property
    def is_croppable(self) -> bool:
        """A rollback leaves no trace only when nothing sits in a window that crop cannot refill."""
        return all(s.bits == 16 or (s.axis == "token" and s.residual_length == 0) for s in self.stores())

    @is_croppable.setter
    def is_croppable(self, value: bool) -> None:
        raise AttributeError("is_croppable is computed from the layer's stores; it cannot be set")

    def __init__(self, spec: AttnSpec, state: SharedState):
        super().__init__()
        self.spec, self.state = spec, state
        self.idx = spec.layer_idx
        self.n_tokens = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.batch_size = key_states.shape[0]
        self.is_initialized = True

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.n_tokens + query_length, 0

    def get_seq_length(self) -> int:
        return self.n_tokens

    def get_max_length(self) -> int:
        return -1

    def offload(self):  # the packed store is the point; nothing to offload separately
        pass

    def prefetch(self):
        pass

    def stores(self) -> list[TokenStore]:
        raise NotImplementedError

    def fork(self, state: SharedState) -> HookedLayer:
        """A copy of this layer bound to `state`: its stores copied (tensors cloned), the model pieces
        (projections, SVD factors, backend) shared."""
        new = copy.copy(self)
        new.state = state
        for name, value in list(vars(self).items()):
            if isinstance(value, TokenStore):
                setattr(new, name, copy.deepcopy(value))
        return new

    def tensors(self) -> list[torch.Tensor]:
        return [t for s in self.stores() for t in s.tensors()]

    def nbytes(self) -> int:
        return storage_nbytes(self.tensors())

    def reset(self) -> None:
        self._reset_stores()
        self.n_tokens = 0
        self.is_initialized = False

    def _reset_stores(self) -> None:
        raise NotImplementedError

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        for s in self.stores():
            s.index_batch(indices)
        if self.idx == self.state.first_layer:
            self.state.rope.index_batch(indices)
            self.state.batch_size = len(indices)
        self.batch_size = len(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        for s in self.stores():
            s.repeat_batch(repeats)
        if self.idx == self.state.first_layer:
            self.state.rope.repeat_batch(repeats)
            if self.state.batch_size is not None:
                self.state.batch_size *= repeats
        if self.is_initialized:
            self.batch_size *= repeats

    def check_crop(self, tokens_to_remove: int) -> int:
        """Validate a crop without changing anything; returns the number of tokens to remove."""
        if tokens_to_remove > 0:
            raise ValueError(
                "crop takes a negative number of tokens to remove (transformers >= 5 convention)"
            )
        n = -tokens_to_remove
        if n > self.n_tokens:
            raise ValueError(f"cannot remove {n} tokens from layer {self.idx}, which holds {self.n_tokens}")
        for s in self.stores():
            s.check_crop(n)
        if self.idx == self.state.first_layer:
            self.state.rope.check_crop(n)
        return n

    def crop(self, tokens_to_remove: int) -> None:
        n = self.check_crop(tokens_to_remove)  # all checks first: a refused crop changes nothing
        if n == 0:
            return
        for s in self.stores():
            s.crop_tokens(n)
        if self.idx == self.state.first_layer:
            self.state.rope.crop_tokens(n)
        self.n_tokens -= n

    # -- update skeleton -----------------------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        st = self.state
        if st.simulate and (st.simulated or self.n_tokens):
            st.hooks.slots.pop(self.idx, None)
            raise RuntimeError(
                "a cache used for a teacher-forced simulation (simulate=True) cannot be extended; "
                "make a new one (or reset() it)"
            )
        cap = st.hooks.pop(self.idx)
        b, q = key_states.shape[0], key_states.shape[-2]
        st.check_batch(b)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.idx == st.first_layer:
            st.rope.append(cap, b, q)
        k_pre, v = self.write_and_read(cap, key_states, value_states, final=st.simulate)
        self.n_tokens += q
        if st.simulate:
            # teacher-forced simulation: every token's K/V comes from the cache (paper's PPL protocol)
            cos, sin = st.rope.cos_sin(k_pre, 0, self.n_tokens)
            k_hat, v_hat = apply_rope(k_pre, cos, sin).to(key_states.dtype), v.to(value_states.dtype)
            if st.on_simulated is not None and self.n_tokens == q:
                st.on_simulated(self.idx, key_states, value_states, k_hat, v_hat)
            if self.idx == st.last_layer:
                st.simulated = True  # one teacher-forced pass per cache: any further update is refused
            return k_hat, v_hat
        n_past = self.n_tokens - q
        if n_past == 0:
            return key_states, value_states  # prefill attention uses exact K/V (DESIGN.md pitfall 4)
        cos, sin = st.rope.cos_sin(k_pre, 0, n_past)
        k_past = apply_rope(k_pre[:, :, :n_past], cos, sin).to(key_states.dtype)
        v_past = v[:, :, :n_past].to(value_states.dtype)
        return torch.cat([k_past, key_states], dim=-2), torch.cat([v_past, value_states], dim=-2)

    def write_and_read(self, cap, key_states, value_states, final: bool):
        """Store this step's tokens; return pre-RoPE K [B,Hkv,T,hd] and V for all T stored tokens."""
        raise NotImplementedError


class HookedCache(Cache):
    """A transformers `Cache` whose layers get X via pre-hooks. Use as a context manager or call detach()."""

    layer_cls = None

    def __init__(self, model, config, layers: Sequence[HookedLayer], state: SharedState):
        super().__init__(layers=list(layers))
        self.model_config = model.config
        self.config = config
        self.state = state
        state.hooks.bind(self)

    @property
    def hooked_layers(self) -> list[HookedLayer]:
        return cast("list[HookedLayer]", self.layers)

    # -- prefix reuse (issue 22.6) --------------------------------------------------------------
    def fork(self) -> HookedCache:
        """An independent copy of this cache (stores cloned, its own capture hooks on the same model):
        fill a cache on a shared prompt once, then `fork()` it for every continuation. `copy.deepcopy`
        does the same, so the transformers prefix-caching recipe works unchanged. The model, its
        projections and the SVD factors are shared, never copied."""
        new = copy.copy(self)
        state = self.state.fork()
        new.state = state
        new.layers = [layer.fork(state) for layer in self.hooked_layers]
        state.hooks.bind(new)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> HookedCache:
        new = self.fork()
        memo[id(self)] = new
        return new

    @staticmethod
    def _prepare(model, config):
        specs = attention_specs(model)
        state = SharedState(specs, config.rope_store, rotary_module(model))
        return specs, state

    # -- lifecycle ------------------------------------------------------------------------------
    def detach(self) -> None:
        """Remove the hooks from the model (the cache can still be read, not extended)."""
        self.state.hooks.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()
        return False

    def __del__(self):
        try:
            self.state.hooks.remove()
        except Exception:
            pass

    def reset(self):
        super().reset()
        st = self.state
        st.rope.reset()
        st.batch_size, st.simulated, st.acc, st.acc_layer, st.prev_true = None, False, None, None, None

    def crop(self, tokens_to_remove: int) -> None:
        """Atomic crop: every layer and the RoPE store are checked before any of them is changed."""
        for layer in self.hooked_layers:
            layer.check_crop(tokens_to_remove)
        for layer in self.hooked_layers:
            layer.crop(tokens_to_remove)

    # -- accounting -----------------------------------------------------------------------------
    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the cache holds between steps (stores, RoPE store, transient CL buffers if any)."""
        st = self.state
        extra = [t for t in (st.acc, st.prev_true) if t is not None]
        return [t for layer in self.hooked_layers for t in layer.tensors()] + st.rope.tensors() + extra

    def nbytes(self) -> int:
        """Bytes really held: the distinct storages behind every tensor of `tensors()` (packed codes,
        fp16 scale/zero, full-precision window, RoPE store). Model-level factors (GQA SVD U/M) are
        not included: see `factor_nbytes()`."""
        return storage_nbytes(self.tensors())

    def factor_nbytes(self) -> int:
        """Bytes of the SVD factors (U, M) this cache's layers use, deduplicated (0 without latents)."""
        return 0
