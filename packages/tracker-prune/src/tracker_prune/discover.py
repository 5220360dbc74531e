"""Find the prunable units of a model (timm ViT blocks, timm ResNet blocks, our own blocks).

Only *internal* widths are prunable: attention head-dims, MLP hidden units, and conv channels that
are produced by one conv and consumed by another inside the same block. Residual-stream channels
(block outputs, embed dim) are never candidates, so they are never sliced (DESIGN.md §1.3, pitfall 5).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from .units import GatedAttention, GatedBatchNorm2d, GatedMlp, _Gated


class UnsupportedBlock(TypeError):
    """A block whose internal widths have no exact pruning rule (it is skipped and reported)."""


def _pairs_for(mod: nn.Module) -> tuple[tuple[str, str, str], ...]:
    """(producer conv, bn, consumer conv) attribute names of a block's internal channel groups.

    Raises `UnsupportedBlock` for a known block type whose configuration cannot be pruned exactly.
    """
    pairs = getattr(mod, "prunable_pairs", None)
    if pairs is not None:
        return tuple(pairs)
    # no import: if timm's resnet module was never imported, no model can hold its blocks (and
    # importing timm.models imports every timm model family, which is slow)
    resnet = sys.modules.get("timm.models.resnet")
    if resnet is None:
        return ()
    BasicBlock, Bottleneck = resnet.BasicBlock, resnet.Bottleneck
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
            raise UnsupportedBlock(
                f"unsupported layer inside a prunable {owner}: {a} is {type(sub).__name__} "
                "(only Identity is supported between a prunable conv and its consumer)"
            )


def _check_block(bname: str, block: nn.Module, pairs) -> None:
    for prod, bn, cons in pairs:
        p, c = getattr(block, prod), getattr(block, cons)
        for conv, role in ((p, "producer"), (c, "consumer")):
            if not isinstance(conv, nn.Conv2d):
                raise UnsupportedBlock(f"unsupported layer as {role} in {bname}: {type(conv).__name__}")
            if conv.groups != 1:
                raise UnsupportedBlock(
                    f"grouped/depthwise conv as {role} ({prod if role == 'producer' else cons}, "
                    f"groups={conv.groups}) in {bname}: its channels are tied to groups, not prunable"
                )
        b = getattr(block, bn)
        if not isinstance(b, (nn.BatchNorm2d, GatedBatchNorm2d)):
            raise UnsupportedBlock(f"unsupported layer after prunable conv in {bname}: {type(b).__name__}")
        if isinstance(b, nn.BatchNorm2d) and not b.affine:
            raise UnsupportedBlock(f"BatchNorm without affine in {bname}.{bn} cannot absorb the gate")
        if type(b) is not nn.BatchNorm2d and isinstance(b, nn.BatchNorm2d):
            raise UnsupportedBlock(
                f"{bname}.{bn} is {type(b).__name__} (BatchNorm with a fused activation or extras), "
                "only plain BatchNorm2d is supported"
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
    """Every prunable channel group of ``model``; unsupported blocks are left out (`skipped_layers`)."""
    for bname, block in model.named_modules():
        try:
            pairs = _pairs_for(block)
            _check_block(bname, block, pairs)
        except UnsupportedBlock:
            continue
        for prod, bn, cons in pairs:
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


def gated_units(model: nn.Module) -> dict[str, _Gated]:
    """Qualified name -> gated unit module, in forward-definition order."""
    return {
        n: m for n, m in model.named_modules() if isinstance(m, (GatedAttention, GatedMlp, GatedBatchNorm2d))
    }


@dataclass(frozen=True)
class SkippedLayer:
    """A layer that looks prunable but was left alone (its widths stay dense), and why."""

    name: str
    type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name or '<root>'} ({self.type}): {self.reason}"


# Known timm layer types with no exact pruning rule here, and why (anything else matching the
# name patterns below gets a generic reason). Keyed by class name.
_KNOWN_REASONS = {
    "WindowAttention": "Swin window attention (relative-position bias per head, SDPA scale taken from "
    "the slimmed head dim) has no pruning rule; only timm Attention is pruned",
    "EvaAttention": "EVA/DINOv3 attention applies rotary position embeddings, which pair head dims: "
    "head-dim pruning would not be exact",
    "InvertedResidual": "the expanded channels pass through a depthwise conv (and squeeze-excite) "
    "before the projection: coupled widths have no pruning rule",
    "DepthwiseSeparableConv": "a depthwise conv on the block input: its only width is the residual stream",
    "EdgeResidual": "the expanded channels pass through squeeze-excite before the projection: no pruning rule",
    "UniversalInvertedResidual": "depthwise convs on the expanded channels: no pruning rule",
    "GluMlp": "GLU MLP: hidden units come in (value, gate) pairs, no pruning rule",
    "SwiGLU": "SwiGLU MLP: hidden units come in (value, gate) pairs, no pruning rule",
    "SwiGLUPacked": "SwiGLU MLP: hidden units come in (value, gate) pairs, no pruning rule",
    "SlimAttention": "already slimmed (physically smaller): prune the gated model before slimming",
    "SlimMlp": "already slimmed (physically smaller): prune the gated model before slimming",
    "GatedMlp": "gated MLP (gMLP spatial gating unit): no pruning rule",
    "ConvMlp": "ConvMlp (norm between fc1 and fc2): no pruning rule",
}
_LOOKS_PRUNABLE = re.compile(r"(Attention|Attn|Mlp|MLP|GLU|Block|Residual|Bottleneck|SeparableConv)$")


def _candidate_reason(name: str, mod: nn.Module) -> str | None:
    """Why a module that looks like a prunable layer is not pruned (None: not a candidate)."""
    cls = type(mod).__name__
    if cls in _KNOWN_REASONS:
        return _KNOWN_REASONS[cls]
    if not _LOOKS_PRUNABLE.search(cls):
        return None
    if "Attention" in cls or cls.endswith("Attn"):
        return f"no pruning rule for attention type {cls} (only timm Attention is pruned)"
    if "Mlp" in cls or "MLP" in cls or "GLU" in cls:
        return f"no pruning rule for MLP type {cls} (only timm Mlp is pruned)"
    convs = [m for m in mod.modules() if isinstance(m, nn.Conv2d)]
    grouped = [m.groups for m in convs if m.groups != 1]
    if grouped:
        return (
            f"conv block type {cls} has grouped/depthwise convs (groups={grouped[0]}) that tie its "
            "internal channels: no pruning rule"
        )
    if convs:
        return (
            f"no pruning rule for conv block type {cls} (only timm ResNet BasicBlock/Bottleneck and "
            "blocks declaring `prunable_pairs` are pruned)"
        )
    return None


def _inside(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def inject_gates_report(model: nn.Module) -> tuple[dict[str, _Gated], list[SkippedLayer]]:
    """Wrap every supported prunable unit of ``model`` in place; return (units by name, skipped layers).

    Supported: timm ``Attention`` (head-dims), timm ``Mlp`` with Linear or 1x1-conv fc1/fc2 (hidden
    units), the internal conv channels of timm ResNet ``BasicBlock``/``Bottleneck`` and of blocks
    declaring ``prunable_pairs``. Every other layer that looks prunable (attention / MLP / conv block
    types, or a supported type in a configuration that cannot be pruned exactly) is left dense and
    listed in ``skipped`` with the reason. Raises ValueError, naming the skipped layers, when nothing
    at all is prunable.
    """
    skipped: list[SkippedLayer] = []
    targets = []
    for name, mod in model.named_modules():
        if isinstance(mod, (GatedAttention, GatedMlp)) or ".inner" in name or name.endswith("inner"):
            continue
        if is_attention(mod) or is_mlp(mod):
            cls = GatedAttention if is_attention(mod) else GatedMlp
            try:
                targets.append((name, cls(mod).train(mod.training)))
            except TypeError as e:
                skipped.append(SkippedLayer(name, type(mod).__name__, str(e)))
    for name, new in targets:  # wrappers inherit the train/eval mode of what they wrap
        set_submodule(model, name, new)
    for bname, block in model.named_modules():
        try:
            _check_block(bname, block, _pairs_for(block))
        except UnsupportedBlock as e:
            skipped.append(SkippedLayer(bname, type(block).__name__, str(e)))
    for pair in list(conv_pairs(model)):
        bn = getattr(pair.block, pair.bn)
        if not isinstance(bn, GatedBatchNorm2d):
            setattr(pair.block, pair.bn, GatedBatchNorm2d(bn).train(bn.training))
    units = gated_units(model)
    # generic candidates: outermost modules that look prunable, hold no gated unit and are not
    # already reported (or inside a reported one)
    reported = [s.name for s in skipped]
    for name, mod in model.named_modules():
        if (
            not name
            or _inside(name, reported)
            or _inside(name, units)
            or any(_inside(u, [name]) for u in units)
        ):
            continue
        if any(_inside(r, [name]) for r in reported):
            continue  # a reported layer is inside this one: report the precise one only
        reason = _candidate_reason(name, mod)
        if reason is not None:
            skipped.append(SkippedLayer(name, type(mod).__name__, reason))
            reported.append(name)
    if not units:
        detail = ""
        if skipped:
            kinds = sorted({f"{s.type}: {s.reason}" for s in skipped})
            detail = f"; left alone: {len(skipped)} layer(s) -- " + " | ".join(kinds[:4])
        raise ValueError(
            f"{type(model).__name__} has no prunable layers (timm Attention/Mlp, timm ResNet blocks, "
            f"or blocks declaring `prunable_pairs`){detail}"
        )
    return units, skipped


def inject_gates(model: nn.Module) -> dict[str, _Gated]:
    """`inject_gates_report` without the skipped list."""
    return inject_gates_report(model)[0]
