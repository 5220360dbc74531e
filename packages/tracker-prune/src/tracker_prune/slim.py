"""Physical slimming: turn a gated (masked) model into a smaller model with identical outputs.

Rules (DESIGN.md §1.6):
* attention: drop heads with no kept dim, zero-pad the others to the largest kept count, gather
  q/k/v rows from timm's ``(3, H, d)`` layout, fold the gate into q/k/v rows, keep the original
  scale;
* MLP: keep rows of fc1 and columns of fc2 (gate folded into fc2's columns);
* conv: slice producer conv outputs, BN (gate folded into weight/bias) and consumer conv inputs.
  An emptied channel group keeps one channel with zero BN weight/bias (outputs exactly 0), so
  tensor shapes stay valid.
Residual-stream widths are never touched.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .discover import conv_pairs, gated_units, set_submodule
from .residual import ResidualGate, residual_gates
from .units import GatedAttention, GatedBatchNorm2d, GatedMlp, SlimAttention, SlimMlp, _Gated

Masks = dict[str, torch.Tensor]


def set_masks(model: nn.Module, masks: Masks) -> None:
    """Write boolean masks into the gated units of ``model`` (unknown names or bad shapes raise)."""
    units: dict[str, _Gated | ResidualGate] = {**gated_units(model), **residual_gates(model)}
    for name, m in masks.items():
        if name not in units:
            raise KeyError(f"no gated unit named {name!r}; known: {sorted(units)[:6]}...")
        unit = units[name]
        if tuple(m.shape) != tuple(unit.mask.shape):
            raise ValueError(
                f"mask for {name!r} has shape {tuple(m.shape)}, expected {tuple(unit.mask.shape)}"
            )
        unit.mask.copy_(m.to(torch.bool))


def _attn_layout(unit: GatedAttention, mask: torch.Tensor):
    heads = [h for h in range(mask.shape[0]) if bool(mask[h].any())]
    kmax = max((int(mask[h].sum()) for h in heads), default=0)
    return heads, kmax


def _slim_attention(unit: GatedAttention, mask: torch.Tensor) -> SlimAttention:
    a = unit.inner
    H, d = a.num_heads, a.head_dim
    D = a.qkv.in_features
    heads, kmax = _attn_layout(unit, mask)
    g = unit.raw_gate().detach() * mask.to(unit.zeta.dtype)
    new = SlimAttention(D, len(heads), kmax, a.scale, a.qkv.bias is not None, a.proj.bias is not None)
    new = new.to(a.qkv.weight.dtype)
    W, b = a.qkv.weight.detach(), a.qkv.bias
    Wp = a.proj.weight.detach()
    with torch.no_grad():
        new.qkv.weight.zero_()
        if new.qkv.bias is not None:
            new.qkv.bias.zero_()
        new.proj.weight.zero_()
        if new.proj.bias is not None:
            new.proj.bias.copy_(a.proj.bias)
        for hi, h in enumerate(heads):
            kept = torch.nonzero(mask[h]).flatten()
            for slot, j in enumerate(kept.tolist()):
                for s in range(3):  # q, k, v share the gate (DESIGN.md §1.2)
                    src, dst = s * H * d + h * d + j, s * len(heads) * kmax + hi * kmax + slot
                    new.qkv.weight[dst] = W[src] * g[h, j]
                    if b is not None:
                        new.qkv.bias[dst] = b[src] * g[h, j]
                new.proj.weight[:, hi * kmax + slot] = Wp[:, h * d + j]
    return new


def _mlp_dims(m: Any) -> tuple[int, int, int]:
    """(input width, hidden width, output width) of a Linear or 1x1-conv MLP."""
    return m.fc1.weight.shape[1], m.fc1.weight.shape[0], m.fc2.weight.shape[0]


def _slim_mlp(unit: GatedMlp, mask: torch.Tensor) -> SlimMlp:
    m = unit.inner
    idx = torch.nonzero(mask).flatten()
    g = (unit.raw_gate().detach() * mask.to(unit.zeta.dtype))[idx]
    d_in, _, d_out = _mlp_dims(m)
    new = SlimMlp(
        d_in,
        len(idx),
        d_out,
        copy.deepcopy(m.act),
        m.fc1.bias is not None,
        m.fc2.bias is not None,
        conv=unit.conv,
    ).to(m.fc1.weight.dtype)
    gshape = (1, -1) + (1,) * (m.fc2.weight.dim() - 2)
    with torch.no_grad():
        new.fc1.weight.copy_(m.fc1.weight[idx])
        if m.fc1.bias is not None and new.fc1.bias is not None:
            new.fc1.bias.copy_(m.fc1.bias[idx])
        new.fc2.weight.copy_(m.fc2.weight[:, idx] * g.reshape(gshape))
        if m.fc2.bias is not None and new.fc2.bias is not None:
            new.fc2.bias.copy_(m.fc2.bias)
    return new


def _conv_slice(conv: Any, idx: torch.Tensor, dim: int) -> nn.Conv2d:
    out_c = len(idx) if dim == 0 else conv.out_channels
    in_c = len(idx) if dim == 1 else conv.in_channels
    new = nn.Conv2d(
        in_c,
        out_c,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        1,
        conv.bias is not None,
        conv.padding_mode,
    ).to(conv.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(conv.weight.index_select(dim, idx))
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias[idx] if dim == 0 else conv.bias)
    return new


def _slim_conv_pair(pair, mask: torch.Tensor) -> None:
    unit: GatedBatchNorm2d = getattr(pair.block, pair.bn)
    bn = unit.bn
    empty = not bool(mask.any())
    idx = torch.nonzero(mask).flatten() if not empty else torch.zeros(1, dtype=torch.long)
    g = (unit.raw_gate().detach() * mask.to(unit.zeta.dtype))[idx]
    new_bn = nn.BatchNorm2d(len(idx), bn.eps, bn.momentum, bn.affine, bn.track_running_stats).to(
        bn.weight.dtype if bn.weight is not None else torch.float32
    )
    with torch.no_grad():
        w = bn.weight[idx] if bn.affine else torch.ones(len(idx), dtype=g.dtype)
        bb = bn.bias[idx] if bn.affine else torch.zeros(len(idx), dtype=g.dtype)
        if not bn.affine:
            raise TypeError(f"{pair.name}: BatchNorm without affine cannot absorb the gate")
        new_bn.weight.copy_(w * g)  # gate after BN folds exactly into the affine (DESIGN.md §1.6)
        new_bn.bias.copy_(bb * g)
        if bn.track_running_stats:
            assert bn.running_mean is not None and bn.running_var is not None  # track_running_stats
            assert new_bn.running_mean is not None and new_bn.running_var is not None
            new_bn.running_mean.copy_(bn.running_mean[idx])
            new_bn.running_var.copy_(bn.running_var[idx])
            if bn.num_batches_tracked is not None and new_bn.num_batches_tracked is not None:
                new_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
    setattr(pair.block, pair.producer, _conv_slice(getattr(pair.block, pair.producer), idx, 0))
    setattr(pair.block, pair.bn, new_bn.train(unit.training))
    setattr(pair.block, pair.consumer, _conv_slice(getattr(pair.block, pair.consumer), idx, 1))


def slim(model: nn.Module, masks: Masks | None = None) -> nn.Module:
    """A physically smaller copy of a gated ``model`` whose outputs equal the masked model's.

    ``masks`` (name -> bool tensor) override the units' stored masks; the effective gate of each
    unit is ``zeta * mask`` and is folded into the kept weights.
    """
    out = copy.deepcopy(model)
    units = gated_units(out)
    if not units:
        raise ValueError("model has no gated units: wrap it with tracker_prune.Pruner first")
    if masks is not None:
        set_masks(out, masks)
    resid = residual_gates(out)
    if resid:  # grouped residual channels: slice every member in place first (residual.py)
        widths = dict(getattr(out, "residual_widths", {}))
        for gate in resid.values():
            gate.slice_members(out)
            widths[gate.group_name] = int(gate.mask.sum())
        del out.residual_gates
        out.__dict__["residual_widths"] = widths  # a plain attribute, recorded for tracker_prune.io
    pairs = {p.name: p for p in conv_pairs(out)}
    for name, unit in units.items():
        mask = unit.mask.detach().clone()
        if isinstance(unit, GatedAttention):
            set_submodule(out, name, _slim_attention(unit, mask).train(unit.training))
        elif isinstance(unit, GatedMlp):
            set_submodule(out, name, _slim_mlp(unit, mask).train(unit.training))
        else:
            _slim_conv_pair(pairs[name], mask)
    return out


def conv_widths(model: nn.Module, masks: Masks) -> dict[int, list]:
    """id(conv) -> [conv, kept out width, kept in width] for every conv of a prunable channel group.

    A conv can belong to two groups (a ResNet Bottleneck's ``conv2`` consumes bn1's channels and
    produces bn2's), so its width on *both* sides comes from the masks: counting it once per group
    at the other side's dense width double-counts it (issue 18). An emptied group keeps one channel.
    """
    out: dict[int, list] = {}
    for p in conv_pairs(model):
        c = max(int(masks[p.name].sum()), 1)
        for attr, side in ((p.producer, 1), (p.consumer, 2)):
            conv = getattr(p.block, attr)
            entry = out.setdefault(id(conv), [conv, conv.out_channels, conv.in_channels])
            entry[side] = c
    return out


def slim_param_count(model: nn.Module, masks: Masks | None = None) -> int:
    """Analytic parameter count of ``slim(model, masks)``, from the masks alone.

    attention: ``3*D*H'k + 3*H'k (qkv bias) + H'k*D + D (proj bias)`` with H' kept heads padded to
    k dims; MLP: ``D*h + h + h*D_out + D_out``; conv groups: every conv touching a group is counted
    once as ``out*in*kh*kw (+out)`` with its kept widths on both sides (an emptied group keeps one
    channel), plus ``2c`` for the group's BN affine. Everything else is counted as is.
    """
    units = gated_units(model)
    for name, g in residual_gates(model).items():
        m = (masks or {}).get(name, g.mask)
        if not bool(m.all()):
            raise ValueError(
                f"slim_param_count does not model grouped residual pruning ({name} is masked); "
                "count the parameters of slim(model) instead"
            )
    masks = {n: (masks or {}).get(n, u.mask).to(torch.bool) for n, u in units.items()}
    unit_params: set[int] = set()
    for u in units.values():
        unit_params.update(id(p) for p in u.parameters())
    convs = conv_widths(model, masks)
    for conv, _, _ in convs.values():
        unit_params.update(id(q) for q in conv.parameters())
    total = sum(p.numel() for p in model.parameters() if id(p) not in unit_params)
    for conv, c_out, c_in in convs.values():
        kh, kw = conv.kernel_size
        total += c_out * c_in * kh * kw + (c_out if conv.bias is not None else 0)
    for name, u in units.items():
        mask = masks[name]
        if isinstance(u, GatedAttention):
            a = u.inner
            D = a.qkv.in_features
            heads, kmax = _attn_layout(u, mask)
            w = len(heads) * kmax
            total += 3 * D * w + (3 * w if a.qkv.bias is not None else 0)
            total += w * a.proj.out_features + (a.proj.out_features if a.proj.bias is not None else 0)
        elif isinstance(u, GatedMlp):
            m = u.inner
            h = int(mask.sum())
            d_in, _, d_out = _mlp_dims(m)
            total += d_in * h + (h if m.fc1.bias is not None else 0)
            total += h * d_out + (d_out if m.fc2.bias is not None else 0)
        else:
            total += 2 * max(int(mask.sum()), 1)  # BN weight + bias of the kept channels
    return total
