"""Find the prunable units of a model (timm ViT blocks, timm ResNet blocks, our own blocks).

Only *internal* widths are prunable: attention head-dims, MLP hidden units, and conv channels that
are produced by one conv and consumed by another inside the same block. Residual-stream channels
(block outputs, embed dim) are never candidates, so they are never sliced (notes §1.3, pitfall 5).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from .units import GatedAttention, GatedBatchNorm2d, GatedMlp


def _pairs_for(mod: nn.Module) -> tuple[tuple[str, str, str], ...]:
    """(producer conv, bn, consumer conv) attribute names of a block's internal channel groups."""
    pairs = getattr(mod, "prunable_pairs", None)
    if pairs is not None:
        return tuple(pairs)
    try:
        from timm.models.resnet import BasicBlock, Bottleneck
    except ImportError:  # pragma: no cover
        return ()
    if isinstance(mod, Bottleneck):
        _require_identity(mod, ("drop_block", "aa"), "Bottleneck")
        return (("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3"))
    if isinstance(mod, BasicBlock):
        _require_identity(mod, ("drop_block", "aa"), "BasicBlock")
        return (("conv1", "bn1", "conv2"),)
    return ()


def _require_identity(mod: nn.Module, attrs, owner: str) -> None:
    for a in attrs:
        sub = getattr(mod, a, None)
        if sub is not None and not isinstance(sub, nn.Identity):
            raise TypeError(
                f"unsupported layer inside a prunable {owner}: {a} is {type(sub).__name__} "
                "(only Identity is supported between a prunable conv and its consumer)"
            )


@dataclass
class ConvPair:
    """One prunable channel group: ``producer`` -> ``bn`` (-> gate) -> act -> ``consumer``."""

    name: str  # qualified name of the bn attribute, e.g. "backbone.1.bn1"
    block: nn.Module
    producer: str
    bn: str
    consumer: str


def conv_pairs(model: nn.Module) -> Iterator[ConvPair]:
    for bname, block in model.named_modules():
        for prod, bn, cons in _pairs_for(block):
            p, c = getattr(block, prod), getattr(block, cons)
            for conv, role in ((p, "producer"), (c, "consumer")):
                if not isinstance(conv, nn.Conv2d):
                    raise TypeError(f"unsupported layer as {role} in {bname}: {type(conv).__name__}")
                if conv.groups != 1:
                    raise TypeError(f"grouped/depthwise conv as {role} in {bname} is not prunable")
            b = getattr(block, bn)
            if not isinstance(b, (nn.BatchNorm2d, GatedBatchNorm2d)):
                raise TypeError(f"unsupported layer after prunable conv in {bname}: {type(b).__name__}")
            yield ConvPair(f"{bname}.{bn}" if bname else bn, block, prod, bn, cons)


def is_attention(mod: nn.Module) -> bool:
    try:
        from timm.layers import Attention
    except ImportError:  # pragma: no cover
        return False
    return type(mod) is Attention


def is_mlp(mod: nn.Module) -> bool:
    try:
        from timm.layers import Mlp
    except ImportError:  # pragma: no cover
        return False
    return type(mod) is Mlp


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def gated_units(model: nn.Module) -> dict[str, nn.Module]:
    """Qualified name -> gated unit module, in forward-definition order."""
    return {
        n: m for n, m in model.named_modules() if isinstance(m, (GatedAttention, GatedMlp, GatedBatchNorm2d))
    }


def inject_gates(model: nn.Module) -> dict[str, nn.Module]:
    """Wrap every prunable unit of ``model`` in place with its gated version; returns them by name."""
    targets = []
    for name, mod in model.named_modules():
        if isinstance(mod, (GatedAttention, GatedMlp)):
            continue
        if is_attention(mod):
            targets.append((name, GatedAttention))
        elif is_mlp(mod):
            targets.append((name, GatedMlp))
    # skip modules nested inside already-gated wrappers
    targets = [(n, c) for n, c in targets if ".inner" not in n]
    for name, cls in targets:  # wrappers inherit the train/eval mode of what they wrap
        inner = model.get_submodule(name)
        set_submodule(model, name, cls(inner).train(inner.training))
    for pair in list(conv_pairs(model)):
        bn = getattr(pair.block, pair.bn)
        if not isinstance(bn, GatedBatchNorm2d):
            setattr(pair.block, pair.bn, GatedBatchNorm2d(bn).train(bn.training))
    units = gated_units(model)
    if not units:
        raise ValueError(
            f"{type(model).__name__} has no prunable layers (timm Attention/Mlp, timm ResNet blocks, "
            "or blocks declaring `prunable_pairs`)"
        )
    return units
