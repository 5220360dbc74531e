"""Save / load trackers as an architecture config plus a state dict (no pickled modules, DESIGN.md pitfall 12).

Files use the shared checkpoint format (`paperworks_shared.checkpoint`): kind ``tracker-prune/tracker``
with the architecture spec as ``meta`` and the state dict as ``state``. The spec records the tracker
class's kwargs, whether the model carries gates, and for a slimmed model the width of every slimmed
unit, so `load` can rebuild the exact shapes before loading weights. Files of this package's earlier
format (``{"spec", "state_dict"}``) still load.

Slimmed timm models (`save_timm` / `load_timm`, kind ``tracker-prune/timm``) store the timm model name and
its constructor kwargs, the kept-index map of every pruned unit and the slim state dict; `load_timm`
rebuilds the dense model with ``pretrained=False``, injects the gates, applies the kept indices,
slims it and loads the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from paperworks_shared.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

from .discover import conv_pairs, gated_units, inject_gates, set_submodule
from .residual import attach_residual_groups
from .trackers import TRACKERS
from .units import GATED_TYPES, SlimAttention, SlimMlp


def arch_of(model: nn.Module) -> str:
    for name, cls in TRACKERS.items():
        if type(model) is cls:
            return name
    raise TypeError(f"cannot serialise {type(model).__name__}: not one of {sorted(TRACKERS)}")


def describe(model: nn.Module) -> dict[str, Any]:
    config: dict[str, Any] = dict(getattr(model, "config"))  # noqa: B009 (nn.Module attributes type as Tensor | Module)
    spec: dict[str, Any] = {
        "arch": arch_of(model),
        "config": config,
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


KIND = "tracker-prune/tracker"
TIMM_KIND = "tracker-prune/timm"


def save(model: nn.Module, path: str | Path) -> None:
    """Write atomically (temp file + rename): a crash never leaves a truncated checkpoint at ``path``."""
    save_checkpoint(path, dict(model.state_dict()), kind=KIND, meta=describe(model))


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


def _read(path: Path, kind: str) -> tuple[dict, dict]:
    """(state, meta) via the shared loader; this package's pre-shared format is still read."""
    if not path.is_file():
        raise FileNotFoundError(2, "no such checkpoint file", str(path))
    try:
        return load_checkpoint(path, kind=kind)
    except CheckpointError as e:
        if "not a paperworks checkpoint" not in str(e):
            raise CheckpointError(f"{path}: not a readable tracker-prune checkpoint ({_short(e)})") from None
    except (
        Exception
    ) as e:  # torch.load on some garbage raises IndexError etc., which the shared loader lets through
        raise CheckpointError(f"{path}: not a readable tracker-prune checkpoint ({_short(e)})") from None
    blob = torch.load(path, map_location="cpu", weights_only=True)  # readable: load_checkpoint got past it
    if (
        kind == KIND
        and isinstance(blob, dict)
        and isinstance(blob.get("spec"), dict)
        and "state_dict" in blob
    ):
        return blob["state_dict"], blob["spec"]
    raise CheckpointError(f"{path}: not a tracker-prune checkpoint (no paperworks {kind!r} checkpoint)")


def load(path: str | Path) -> nn.Module:
    """Rebuild a model saved by `save` (``weights_only=True``: no code in the file is ever run).

    A missing file raises FileNotFoundError; anything else that is not a checkpoint written by `save`
    (corrupt, truncated, another program's file, mismatched weights) raises `CheckpointError` naming it.
    """
    path = Path(path)
    state, spec = _read(path, KIND)
    try:
        return _rebuild({"spec": spec, "state_dict": state})
    except Exception as e:
        raise CheckpointError(f"{path}: checkpoint does not match its architecture spec ({_short(e)})") from e


def kept_index_map(model: nn.Module) -> dict[str, dict]:
    """unit name -> {"shape": mask shape, "kept": flat indices of kept elements} of a gated model."""
    units = gated_units(model)
    if not units:
        raise ValueError("model has no gated units: wrap it with tracker_prune.Pruner and apply masks first")
    return {
        n: {"shape": list(u.mask.shape), "kept": torch.nonzero(u.mask.flatten()).flatten().tolist()}
        for n, u in units.items()
    }


def save_timm(masked: nn.Module, path: str | Path, name: str | None = None, **create_kwargs) -> nn.Module:
    """Slim a pruned (masked) timm model and save it as (timm name + kwargs, kept-index map, slim state).

    ``name`` defaults to the model's ``pretrained_cfg["architecture"]``; ``create_kwargs`` are what
    ``timm.create_model(name, pretrained=False, **create_kwargs)`` needs to rebuild the dense model
    (e.g. ``num_classes=0``). Grouped residual masks are not supported here (slim our trackers with
    `save` instead). Returns the slim model that was saved.
    """
    from .residual import residual_gates
    from .slim import slim

    if residual_gates(masked):
        raise ValueError("save_timm: grouped residual masks are not supported for timm models")
    if name is None:
        name = (getattr(masked, "pretrained_cfg", None) or {}).get("architecture")
        if not name:
            raise ValueError("save_timm: pass name= (the timm model name to rebuild from)")
    kept = kept_index_map(masked)
    small = slim(masked)
    meta = {"timm_name": name, "create_kwargs": dict(create_kwargs), "kept": kept}
    save_checkpoint(path, dict(small.state_dict()), kind=TIMM_KIND, meta=meta)
    return small


def load_timm(path: str | Path) -> nn.Module:
    """Rebuild a slim timm model saved by `save_timm` (no download: ``pretrained=False``)."""
    import warnings

    import timm

    from .pruner import Pruner
    from .slim import slim

    path = Path(path)
    state, meta = _read(path, TIMM_KIND)
    try:
        model = timm.create_model(meta["timm_name"], pretrained=False, **meta["create_kwargs"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skipped layers were reported at save time
            p = Pruner(model, "l1")
        masks = {}
        for n, k in meta["kept"].items():
            if n not in p.units:
                raise KeyError(f"unit {n!r} of the kept-index map is not in the rebuilt model")
            m = torch.zeros(int(torch.tensor(k["shape"]).prod()), dtype=torch.bool)
            m[torch.as_tensor(k["kept"], dtype=torch.long)] = True
            masks[n] = m.reshape(k["shape"])
        small = slim(model, masks)
        small.load_state_dict(state)
    except Exception as e:
        raise CheckpointError(f"{path}: checkpoint does not match its timm model ({_short(e)})") from e
    return small.eval()


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
