"""Save / load trackers as an architecture config plus a state dict (no pickled modules, pitfall 12).

The config records the tracker class's kwargs, whether the model carries gates, and for a slimmed
model the width of every slimmed unit, so `load` can rebuild the exact shapes before loading weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .discover import conv_pairs, inject_gates, set_submodule
from .residual import attach_residual_groups
from .trackers import TRACKERS
from .units import GATED_TYPES, SlimAttention, SlimMlp


def arch_of(model: nn.Module) -> str:
    for name, cls in TRACKERS.items():
        if type(model) is cls:
            return name
    raise TypeError(f"cannot serialise {type(model).__name__}: not one of {sorted(TRACKERS)}")


def describe(model: nn.Module) -> dict:
    spec = {
        "arch": arch_of(model),
        "config": dict(model.config),
        "gated": False,
        "attn": {},
        "mlp": {},
        "conv": {},
    }
    spec["gated"] = any(isinstance(m, GATED_TYPES) for m in model.modules())
    spec["residual_gated"] = hasattr(model, "residual_gates")
    spec["residual_widths"] = dict(getattr(model, "residual_widths", {}))
    for n, m in model.named_modules():
        if isinstance(m, SlimAttention):
            spec["attn"][n] = [
                m.qkv.in_features,
                m.num_heads,
                m.head_dim,
                m.scale,
                m.qkv.bias is not None,
                m.proj.bias is not None,
            ]
        elif isinstance(m, SlimMlp):
            spec["mlp"][n] = [m.fc1.in_features, m.fc1.out_features, m.fc2.out_features]
    if not spec["gated"]:
        for p in conv_pairs(model):
            spec["conv"][p.name] = getattr(p.block, p.producer).out_channels
    return spec


class CheckpointError(ValueError):
    """A file that is not a readable tracker-prune checkpoint (corrupt, truncated, foreign)."""


def save(model: nn.Module, path: str | Path) -> None:
    """Write atomically (temp file + rename): a crash never leaves a truncated checkpoint at ``path``."""
    from paperworks_shared.files import atomic_torch_save

    atomic_torch_save({"spec": describe(model), "state_dict": model.state_dict()}, path)


def _resize_pair(pair, c: int) -> None:
    prod, cons = getattr(pair.block, pair.producer), getattr(pair.block, pair.consumer)
    if prod.out_channels == c:
        return
    setattr(
        pair.block,
        pair.producer,
        nn.Conv2d(
            prod.in_channels,
            c,
            prod.kernel_size,
            prod.stride,
            prod.padding,
            prod.dilation,
            1,
            prod.bias is not None,
        ),
    )
    setattr(pair.block, pair.bn, nn.BatchNorm2d(c))
    setattr(
        pair.block,
        pair.consumer,
        nn.Conv2d(
            c,
            cons.out_channels,
            cons.kernel_size,
            cons.stride,
            cons.padding,
            cons.dilation,
            1,
            cons.bias is not None,
        ),
    )


def load(path: str | Path) -> nn.Module:
    """Rebuild a model saved by `save` (``weights_only=True``: no code in the file is ever run).

    A missing file raises FileNotFoundError; anything else that is not a checkpoint written by `save`
    (corrupt, truncated, another program's file, mismatched weights) raises `CheckpointError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such checkpoint file", str(path))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip / unsupported-global errors all mean "not our checkpoint"
        raise CheckpointError(f"{path}: not a readable tracker-prune checkpoint ({_short(e)})") from e
    if not isinstance(blob, dict) or not isinstance(blob.get("spec"), dict) or "state_dict" not in blob:
        raise CheckpointError(f"{path}: not a tracker-prune checkpoint (no 'spec' / 'state_dict')")
    try:
        return _rebuild(blob)
    except Exception as e:
        raise CheckpointError(f"{path}: checkpoint does not match its architecture spec ({_short(e)})") from e


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}"


def _rebuild(blob: dict) -> nn.Module:
    spec = blob["spec"]
    model = TRACKERS[spec["arch"]](**spec["config"])
    widths = spec.get("residual_widths", {})
    if widths:  # a grouped-residual slim model: cut every group to its kept width (first k channels)
        gates = attach_residual_groups(model)
        for g in gates.values():
            k = widths.get(g.group_name, g.width)
            g.mask.copy_(torch.arange(g.width) < k)
            g.slice_members(model)
        del model.residual_gates
        model.residual_widths = dict(widths)
    if spec.get("residual_gated"):
        attach_residual_groups(model)
    if spec["gated"]:
        inject_gates(model)
    for n, (dim, h, k, scale, qb, pb) in spec["attn"].items():
        set_submodule(model, n, SlimAttention(dim, h, k, scale, qb, pb))
    for n, (i, h, o) in spec["mlp"].items():
        act = model.get_submodule(n).act
        set_submodule(model, n, SlimMlp(i, h, o, act, True, True))
    pairs = {p.name: p for p in conv_pairs(model)}
    for n, c in spec["conv"].items():
        _resize_pair(pairs[n], c)
    model.load_state_dict(blob["state_dict"])
    return model.eval()
