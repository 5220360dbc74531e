"""`IHAMixing`: the parameters IHA adds to a layer (α^Q, α^K, α^V, R), kept in fp32 (DESIGN.md pitfall 12)."""

from __future__ import annotations

import torch
from torch import nn

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def keep_fp32_apply(module: nn.Module, fn, recurse: bool, names=None):
    """Run ``nn.Module._apply`` but never move an fp32 tensor to a lower-precision float dtype.

    ``model.to(torch.bfloat16)`` / ``.half()`` then keep these tensors in fp32 (values untouched, device
    still follows); ``.double()`` is allowed (more precision). ``names`` limits the guard to some
    parameters/buffers (None = all of this module's own tensors).
    """

    def guarded(t):
        out = fn(t)
        if (
            t.dtype == torch.float32
            and out.dtype in _LOW_PRECISION
            and (names is None or any(t is getattr(module, n, None) for n in names))
        ):
            out = t.to(device=out.device)
        return out

    return nn.Module._apply(module, guarded, recurse)


class IHAMixing(nn.Module):
    """Mixing tensors α ∈ R^{Hs×Hs×P} indexed [source m, target h, pseudo p] and the collapse R.

    GQA (DESIGN.md §1.7): α^Q mixes within the H query heads, α^K/α^V within the Hkv KV heads.
    ``R`` is ``[H, H·P]`` (global, paper §4.1) or ``[H, P]`` (per-head).
    Parameters stay fp32 and are cast at use; give them their own optimizer group without weight decay
    (`iha_param_groups`).
    """

    def __init__(
        self,
        num_heads: int,
        num_kv_heads: int,
        P: int,
        *,
        collapse: str = "global",
        mix_v: bool = True,
        init: str = "identity_noise",
        init_std: float = 0.02,
        mask_mode: str = "flat_causal",
    ):
        super().__init__()
        if not isinstance(P, int) or P < 1:
            raise ValueError(f"P (pseudo-heads per head) must be an integer >= 1, got {P!r}")
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}")
        if collapse not in ("global", "per_head"):
            raise ValueError(f"collapse must be 'global' or 'per_head', got {collapse!r}")
        self.num_heads, self.num_kv_heads, self.P = num_heads, num_kv_heads, P
        self.collapse, self.mask_mode = collapse, mask_mode
        f32 = torch.float32
        self.alpha_q = nn.Parameter(torch.zeros(num_heads, num_heads, P, dtype=f32))
        self.alpha_k = nn.Parameter(torch.zeros(num_kv_heads, num_kv_heads, P, dtype=f32))
        self.alpha_v = nn.Parameter(torch.zeros(num_kv_heads, num_kv_heads, P, dtype=f32)) if mix_v else None
        r_shape = (num_heads, num_heads * P) if collapse == "global" else (num_heads, P)
        self.R = nn.Parameter(torch.zeros(*r_shape, dtype=f32))
        self.reset_parameters(init, init_std)

    def _apply(self, fn, recurse=True):  # α, R (and a RoPE table) stay fp32 under .to(bf16) / .half()
        return keep_fp32_apply(self, fn, recurse)

    def alphas(self):
        return [a for a in (self.alpha_q, self.alpha_k, self.alpha_v) if a is not None]

    @torch.no_grad()
    def reset_parameters(self, init: str = "identity_noise", init_std: float = 0.02) -> None:
        """Initialise α and R.

        * ``identity_noise``: α[m,h,p] = 1[m=h] + N(0, σ); R averages each head's own P pseudo-outputs.
          Without the noise every pseudo copy gets the same gradient and the layer stays MHA (§6.4).
        * ``mha_exact``: α identity, R selects the pseudo that makes the layer exactly MHA for the mask:
          the last one for flat-causal (it sees every pseudo of its own token), the first otherwise (§6.2).
        * ``normal``: α ~ N(0, 1/√Hs), R ~ N(0, 1/√(fan-in)).
        """
        H, P = self.num_heads, self.P
        for a in self.alphas():
            hs = a.shape[0]
            if init == "normal":
                a.normal_(0.0, hs**-0.5)
            else:
                a.copy_(torch.eye(hs)[:, :, None].expand(hs, hs, P))
                if init == "identity_noise":
                    a.add_(torch.randn_like(a) * init_std)
                elif init != "mha_exact":
                    raise ValueError(f"unknown init {init!r}; choose identity_noise, mha_exact or normal")
        self.R.zero_()
        if init == "normal":
            self.R.normal_(0.0, self.R.shape[1] ** -0.5)
            return
        sel = P - 1 if self.mask_mode == "flat_causal" else 0
        cols = torch.arange(H) * P if self.collapse == "global" else torch.zeros(H, dtype=torch.long)
        if init == "mha_exact":
            self.R[torch.arange(H), cols + sel] = 1.0
        else:
            for p in range(P):
                self.R[torch.arange(H), cols + p] = 1.0 / P

    def extra_param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"H={self.num_heads}, Hkv={self.num_kv_heads}, P={self.P}, collapse={self.collapse}"
