"""Grouped residual-stream pruning (opt-in, ``Pruner(..., group_residual=True)``; DESIGN.md §1.5,
DESIGN.md pitfall 5: "never slice residual-stream channels unless they are grouped").

A *residual group* is one channel space shared by many layers: the ViT embed dim (patch embedding,
positional embeddings, every ``attn.proj`` / ``mlp.fc2`` output, every LayerNorm, every ``qkv`` /
``fc1`` input and the head's input), or a CNN stage's width (the stage's entry conv + BN, each
residual block's ``conv2``/``bn2`` output and ``conv1`` input, the next stage's input). One boolean
mask per group is applied *everywhere at once*, so the slimmed model removes the same channels from
every member (ChipNet issue #8's uneven-block problem cannot arise).

What "the masked model" means, exactly (so slimmed == masked holds in float64):

* every write into the stream is multiplied by the mask (the ViT's token input to the blocks, each
  ``proj``/``fc2`` output; a CNN stage's BN outputs, mask after BN), so masked channels are exactly
  zero everywhere in the stream;
* every LayerNorm over the stream computes its mean and variance **over the kept channels only**
  and outputs 0 in masked channels. A plain LayerNorm would include the zeros in its statistics,
  which is *not* the model with those channels removed; the masked-statistics LN is, by definition.
* readers (``qkv``, ``fc1``, convs, the head) then see zeros in masked channels, which is exactly
  what removing their input columns does.

Masks are binary (no learnable residual gate): ranking uses the L1 norm of every weight touching a
channel (or random scores for ``method="random"``). Masking is done with forward hooks bound to the
group's `ResidualGate` module, so `copy.deepcopy` keeps the wiring; `tracker_prune.slim` slices all
members in place and removes the hooks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _member_lists(spec: dict) -> dict:
    keys = ("mask_in", "mask_out", "norms", "slice_out", "slice_in", "slice_params")
    return {k: list(spec.get(k, ())) for k in keys}


class ResidualGate(nn.Module):
    """One boolean mask over a residual channel group plus the hooks that apply it (see module doc)."""

    unit_kind = "resid"
    mask: torch.Tensor
    members: dict[str, list[Any]]  # the member modules are duck-typed (Linear, Conv2d, norms, ...)

    def __init__(self, name: str, width: int, spec: dict):
        super().__init__()
        self.group_name, self.width = name, width
        self.register_buffer("mask", torch.ones(width, dtype=torch.bool))
        # plain (unregistered) references: deepcopy maps them onto the copied modules
        self.__dict__["members"] = _member_lists(spec)
        for mod in self.members["norms"]:
            if not isinstance(mod, nn.LayerNorm) or tuple(mod.normalized_shape) != (width,):
                raise TypeError(
                    f"residual group {name!r}: norm {type(mod).__name__} is not LayerNorm({width})"
                )
        self.attach()

    # ------------------------------------------------------------------ masking hooks
    def _m(self, like: torch.Tensor, dim: int) -> torch.Tensor:
        shape = [1] * like.dim()
        shape[dim] = self.width
        return self.mask.to(like.dtype).reshape(shape)

    def _pre(self, mod, args):
        x = args[0]
        return (x * self._m(x, -1 if x.dim() == 3 else 1),) + tuple(args[1:])

    def _out(self, mod, args, out):
        return out * self._m(out, -1 if out.dim() == 3 else 1)

    def _norm(self, mod, args, out):
        """LayerNorm with statistics over the kept channels only; 0 in masked channels."""
        x = args[0]
        m = self._m(x, -1)
        n = m.sum()
        mean = (x * m).sum(-1, keepdim=True) / n
        var = (((x - mean) * m) ** 2).sum(-1, keepdim=True) / n
        y = (x - mean) / torch.sqrt(var + mod.eps)
        if mod.weight is not None:
            y = y * mod.weight
        if mod.bias is not None:
            y = y + mod.bias
        return y * m

    def attach(self) -> None:
        mem = self.members
        for m in mem["mask_in"]:
            m.register_forward_pre_hook(self._pre)
        for m in mem["mask_out"]:
            m.register_forward_hook(self._out)
        for m in mem["norms"]:
            m.register_forward_hook(self._norm)

    def detach_hooks(self, root: nn.Module) -> None:
        """Remove this gate's hooks from every module of ``root`` (works on deep copies too)."""
        for mod in root.modules():
            for hooks in (mod._forward_hooks, mod._forward_pre_hooks):
                for k in [k for k, fn in hooks.items() if getattr(fn, "__self__", None) is self]:
                    del hooks[k]

    # ------------------------------------------------------------------ ranking
    @torch.no_grad()
    def l1_importance(self) -> torch.Tensor:
        """Sum of |w| over every weight touching each channel (rows, columns, norm/BN affine, pos)."""
        s = torch.zeros(self.width, dtype=torch.float64)
        mem = self.members
        for mod in mem["slice_out"] + mem["norms"]:
            w = mod.weight
            if w is not None:
                s += w.detach().abs().reshape(w.shape[0], -1).sum(1).double().cpu()
        for mod in mem["slice_in"]:
            s += mod.weight.detach().abs().transpose(0, 1).reshape(self.width, -1).sum(1).double().cpu()
        for owner, pname, dim in mem["slice_params"]:
            p = getattr(owner, pname).detach().abs().movedim(dim, 0)
            s += p.reshape(self.width, -1).sum(1).double().cpu()
        return s.float()

    def param_cost(self) -> float:
        """Parameters attached to one residual channel at the other dims' dense widths."""
        c = 0
        mem = self.members
        for mod in mem["slice_out"] + mem["norms"]:
            for p in (getattr(mod, "weight", None), getattr(mod, "bias", None)):
                if p is not None:
                    c += p.numel() // p.shape[0]
        for mod in mem["slice_in"]:
            c += mod.weight.numel() // mod.weight.shape[1]
        for owner, pname, dim in mem["slice_params"]:
            p = getattr(owner, pname)
            c += p.numel() // p.shape[dim]
        return float(c)

    # ------------------------------------------------------------------ slimming (in place)
    @torch.no_grad()
    def slice_members(self, root: nn.Module) -> None:
        """Remove the masked channels from every member, in place, and drop this gate's hooks."""
        idx = torch.nonzero(self.mask).flatten()
        if len(idx) == 0:
            raise ValueError(f"residual group {self.group_name!r} would be emptied; keep >= 1 channel")
        self.detach_hooks(root)
        mem = self.members
        for mod in mem["slice_out"] + mem["norms"]:
            _slice_out(mod, idx)
        for mod in mem["slice_in"]:
            _slice_in(mod, idx)
        for owner, pname, dim in mem["slice_params"]:
            p = getattr(owner, pname)
            setattr(owner, pname, nn.Parameter(p.index_select(dim, idx).clone(), p.requires_grad))


def _param(t: torch.Tensor | None, idx: torch.Tensor, dim: int) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t.detach().index_select(dim, idx).clone(), t.requires_grad)


def _slice_out(mod: Any, idx: torch.Tensor) -> None:
    mod.weight = _param(mod.weight, idx, 0)
    if getattr(mod, "bias", None) is not None:
        mod.bias = _param(mod.bias, idx, 0)
    n = len(idx)
    if isinstance(mod, nn.Linear):
        mod.out_features = n
    elif isinstance(mod, nn.Conv2d):
        if mod.groups != 1:
            raise TypeError("grouped conv cannot be a residual-group writer")
        mod.out_channels = n
    elif isinstance(mod, nn.BatchNorm2d):
        if mod.track_running_stats and mod.running_mean is not None and mod.running_var is not None:
            mod.running_mean = mod.running_mean[idx].clone()
            mod.running_var = mod.running_var[idx].clone()
        mod.num_features = n
    elif isinstance(mod, nn.LayerNorm):
        mod.normalized_shape = (n,)
    else:
        raise TypeError(f"cannot slice the output of {type(mod).__name__} in a residual group")


def _slice_in(mod: Any, idx: torch.Tensor) -> None:
    mod.weight = _param(mod.weight, idx, 1)
    if isinstance(mod, nn.Linear):
        mod.in_features = len(idx)
    elif isinstance(mod, nn.Conv2d):
        if mod.groups != 1:
            raise TypeError("grouped conv cannot be a residual-group reader")
        mod.in_channels = len(idx)
    else:
        raise TypeError(f"cannot slice the input of {type(mod).__name__} in a residual group")


def attach_residual_groups(model: nn.Module) -> dict[str, ResidualGate]:
    """Build one `ResidualGate` per group the model declares (``model.residual_groups()``).

    Call before gates are injected (the spec names plain timm / torch modules). The gates live in
    ``model.residual_gates`` (a ModuleDict), so their names are ``residual_gates.<group>``.
    """
    spec_fn = getattr(model, "residual_groups", None)
    if spec_fn is None:
        raise ValueError(
            f"{type(model).__name__} declares no residual groups (a `residual_groups()` method); "
            "group_residual=True is supported for the package's trackers"
        )
    existing = getattr(model, "residual_gates", None)
    if isinstance(existing, nn.ModuleDict):
        return {f"residual_gates.{k}": g for k, g in existing.items() if isinstance(g, ResidualGate)}
    gates: dict[str, ResidualGate] = {}
    for name, width, spec in spec_fn():
        gates[name] = ResidualGate(name, width, spec)
    model.residual_gates = nn.ModuleDict(gates)
    return {f"residual_gates.{k}": g for k, g in gates.items()}


def residual_gates(model: nn.Module) -> dict[str, ResidualGate]:
    return {n: m for n, m in model.named_modules() if isinstance(m, ResidualGate)}
