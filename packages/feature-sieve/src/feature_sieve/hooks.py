"""Finding the sieve layer in any `nn.Module`, tapping its output, and the parameters "at or below" it.

The feature sieve needs three things from an arbitrary backbone (timm, torchvision-style or plain):

* the module named ``sieve_layer`` (error lists the available names when it does not exist);
* its output on a batch, optionally *truncating* the forward right after it (DESIGN.md §1.2 ``efficient``
  path: the aux and forget steps never need the upper network);
* the parameters computed "at or below" it: every parameter the sieve layer's output depends on, found
  once by autograd on a truncated forward (DESIGN.md §7 ``lower_parameters``). For a torchvision ResNet with
  ``sieve_layer="layer{AP}"`` this is ``conv1, bn1, layer1..layer{AP}``, i.e. the official
  ``params_list[:2 + aux_pos]`` (DESIGN.md §1.2). Direct parameters of the root or other ancestors count only
  when consumed before the sieve layer (a ViT's ``pos_embed`` / ``cls_token``: yes; a root-level logit
  scale used after it: no).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class _StopForward(Exception):
    """Raised from the sieve layer's hook to cut the forward pass short."""


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` (``model.named_modules()`` spelling); a KeyError lists the names."""
    modules = dict(model.named_modules())
    if not isinstance(name, str) or not name or name not in modules:
        names = [n for n in modules if n]
        shown = ", ".join(names[:60]) + (f", ... ({len(names)} in all)" if len(names) > 60 else "")
        raise KeyError(f"sieve layer {name!r} does not exist in {type(model).__name__}; available: {shown}")
    return modules[name]


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor):
        return out[0]  # e.g. HF blocks return (hidden_states, ...)
    raise TypeError(
        f"the sieve layer returned {type(out).__name__}; expected a tensor (or a tuple starting with one)"
    )


@contextlib.contextmanager
def tap(model: nn.Module, layer: str) -> Iterator[dict]:
    """Context manager capturing ``layer``'s output into ``box["out"]`` on every forward inside it."""
    box: dict = {}
    h = resolve_layer(model, layer).register_forward_hook(
        lambda m, i, o: box.__setitem__("out", _first_tensor(o))
    )
    try:
        yield box
    finally:
        h.remove()


def forward_to(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """Run ``model(x)`` only until ``layer`` has produced its output, and return that output."""
    box: dict = {}

    def hook(m, i, o):
        box["out"] = _first_tensor(o)
        raise _StopForward

    h = resolve_layer(model, layer).register_forward_hook(hook)
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        h.remove()
    if "out" not in box:
        raise RuntimeError(f"layer {layer!r} was not executed by the model's forward pass")
    return box["out"]


def forward_with_tap(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full forward: ``(model(x), output of layer)``."""
    with tap(model, layer) as box:
        out = model(x)
    if "out" not in box:
        raise RuntimeError(f"layer {layer!r} was not executed by the model's forward pass")
    return out, box["out"]


def execution_order(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of modules in the order their forward *finished* on ``example_input`` (root last)."""
    order: list[str] = []
    handles = [
        m.register_forward_hook(lambda mod, i, o, n=name: order.append(n))
        for name, m in model.named_modules()
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return order


def _is_ancestor(parent: str, child: str) -> bool:
    return parent == "" or child.startswith(parent + ".")


def lower_parameters(model: nn.Module, sieve_layer: str, example_input: torch.Tensor) -> list[nn.Parameter]:
    """Trainable parameters the sieve layer's output depends on ("at or below" it), in model order.

    Found by autograd, not by module order or nesting: one forward on ``example_input`` (eval mode)
    truncated at ``sieve_layer``, then the parameters with a gradient path to its output. So a direct
    parameter of the root or of any ancestor counts only when it is consumed before the sieve layer
    (a ViT's ``pos_embed``: yes; a logit scale or a head bias on the root used after it: no), and
    modules that run earlier but do not feed the sieve layer are not counted either.
    """
    resolve_layer(model, sieve_layer)
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    if not params:
        return []
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            h = forward_to(model, sieve_layer, example_input)
            if not h.requires_grad:
                return []
            grads = torch.autograd.grad(h.float().sum(), params, allow_unused=True)
    finally:
        model.train(was_training)
    return [p for p, g in zip(params, grads) if g is not None]


def split_parameters(
    model: nn.Module, lower: list[nn.Parameter]
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(all trainable parameters, the trainable ones *not* in ``lower``), deduplicated, in model order."""
    ids = {id(p) for p in lower}
    all_params, upper, seen = [], [], set()
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            all_params.append(p)
            if id(p) not in ids:
                upper.append(p)
    return all_params, upper


@contextlib.contextmanager
def preserved_buffers(*modules: nn.Module) -> Iterator[None]:
    """Every buffer of ``modules`` holds its old value afterwards (copied back in place).

    The aux and forget forwards are side computations: whatever their forward hooks or layers update
    as state (spectral-norm power-iteration vectors ``_u`` / ``_v`` / ``weight_u``, BN counters, custom
    EMA buffers), above or below the sieve layer, is put back, so only the main step moves buffers.
    """
    saved = []
    seen: set[int] = set()
    for mod in modules:
        for b in mod.buffers():
            if id(b) not in seen:
                seen.add(id(b))
                saved.append((b, b.detach().clone()))
    try:
        yield
    finally:
        with torch.no_grad():
            for b, old in saved:
                if b.shape == old.shape:
                    b.copy_(old)


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers keep using batch statistics but do not update their running stats inside.

    The aux and forget forwards must not move BN running statistics (DESIGN.md pitfall 5): with
    ``track_running_stats=False`` in train mode, `F.batch_norm` normalises by the batch and leaves the
    buffers alone.
    """
    bns = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True
