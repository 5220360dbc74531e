"""Export one adapted task as a compact plain-PyTorch model, equal in outputs to the gated one.

Masked kernels become exact zeros. With `dense_slim`, an input channel of conv l+1 that no active
kernel reads is removed, together with the filter of conv l that produced it and its BatchNorm
channel: exact, since transductive BN is per channel. A filter whose own kernels are all dead but
whose output is still read is kept: its BN still emits ReLU(beta), a constant that zero padding makes
position-dependent, so dropping it would not be exact (DESIGN.md §1.4).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .gates import GatedConv2d


def _pair(v: object) -> tuple[int, int]:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    return (int(t[0]), int(t[1]))


def _plain_conv(g: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A plain Conv2d with `g`'s stride / padding / dilation (g: a GatedConv2d or an nn.Conv2d)."""
    padding = g.padding
    conv = nn.Conv2d(
        weight.shape[1],
        weight.shape[0],
        (int(weight.shape[2]), int(weight.shape[3])),
        stride=_pair(g.stride),
        padding=padding if isinstance(padding, str) else _pair(padding),
        dilation=_pair(g.dilation),
        bias=bias is not None,
        dtype=weight.dtype,
        device=weight.device,
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None and conv.bias is not None:
            conv.bias.copy_(bias)
    return conv


def export_task(task, dense_slim: bool = True) -> nn.Module:
    dock = task.dock
    params = {k: v.detach() for k, v in task.params.items()}
    net = copy.deepcopy(dock.net)
    # load adapted weights (names in params are prefixed by "net.")
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(params[f"net.{name}"])
    # replace gated convs by plain convs with zeroed kernels
    for _mod_name, mod in list(net.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, GatedConv2d):
                mask = (child.psi > 0).to(child.weight.dtype).expand(child.out_channels, child.in_channels)
                w = child.weight * mask[:, :, None, None]
                setattr(mod, child_name, _plain_conv(child, w, child.bias))
    if dense_slim:
        _slim_sequential_chains(net)
    return net.eval()


def _slim_sequential_chains(net: nn.Module) -> None:
    """Drop unread channels along every nn.Sequential of [Conv2d, BatchNorm2d?, act]* blocks."""
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        items = list(seq.named_children())
        convs = [i for i, (_, m) in enumerate(items) if isinstance(m, nn.Conv2d)]
        for a, b in zip(convs, convs[1:]):
            between = [items[i][1] for i in range(a + 1, b)]
            if not all(isinstance(m, (nn.BatchNorm2d, nn.ReLU, nn.Identity)) for m in between):
                continue
            conv_a, conv_b = items[a][1], items[b][1]
            assert isinstance(conv_a, nn.Conv2d) and isinstance(conv_b, nn.Conv2d)
            read = conv_b.weight.detach().abs().sum(dim=(0, 2, 3)) > 0
            if read.all() or not read.any():
                continue
            keep = read.nonzero().flatten()
            new_a = _plain_conv(
                conv_a,
                conv_a.weight.detach()[keep],
                None if conv_a.bias is None else conv_a.bias.detach()[keep],
            )
            new_b = _plain_conv(
                conv_b, conv_b.weight.detach()[:, keep], None if conv_b.bias is None else conv_b.bias.detach()
            )
            setattr(seq, items[a][0], new_a)
            setattr(seq, items[b][0], new_b)
            for i in range(a + 1, b):
                bn = items[i][1]
                if isinstance(bn, nn.BatchNorm2d):
                    nb = nn.BatchNorm2d(
                        len(keep),
                        eps=bn.eps,
                        momentum=bn.momentum,
                        affine=bn.affine,
                        track_running_stats=bn.track_running_stats,
                        dtype=bn.weight.dtype if bn.affine else None,
                    )
                    with torch.no_grad():
                        if bn.affine:
                            nb.weight.copy_(bn.weight[keep])
                            nb.bias.copy_(bn.bias[keep])
                        if bn.running_mean is not None and bn.running_var is not None:
                            assert nb.running_mean is not None and nb.running_var is not None
                            nb.running_mean.copy_(bn.running_mean[keep])
                            nb.running_var.copy_(bn.running_var[keep])
                    setattr(seq, items[i][0], nb)
            items = list(seq.named_children())


COMPACT_FORMAT = "metadock-compact"


def save_compact(model: nn.Module, path, meta: dict | None = None):
    """Save an exported compact model as a state dict + architecture config in one torch file, written
    atomically and loadable with `torch.load(weights_only=True)` (no pickled classes): see
    `load_compact`. Needs a model exported from a Conv4-based MetaDOCK (it carries `config`)."""
    from paperworks_shared.files import atomic_torch_save

    cfg = getattr(model, "config", None)
    if not isinstance(cfg, dict):
        raise ValueError("save_compact needs a model exported from a Conv4-based MetaDOCK (no .config)")
    blob = {
        "format": COMPACT_FORMAT,
        "version": 1,
        "net": dict(cfg),
        "meta": dict(meta or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return atomic_torch_save(blob, path)


def load_compact(path) -> nn.Module:
    """Rebuild a compact model saved by `save_compact` (weights-only load; slimmed layer widths are
    read from the stored tensors). Raises ValueError naming the file if it is not such a file."""
    from pathlib import Path

    from .models import Conv4

    path = Path(path)
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path} cannot be read as a metadock compact model ({msg})") from None
    if not isinstance(blob, dict) or blob.get("format") != COMPACT_FORMAT:
        raise ValueError(f"{path} is not a metadock compact model (no format {COMPACT_FORMAT!r})")
    sd = blob["state_dict"]
    try:
        net = Conv4(**blob["net"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: invalid architecture config ({e})") from None
    dtype = next((v.dtype for v in sd.values() if v.is_floating_point()), torch.float32)
    for mod in list(net.modules()):
        for name, child in list(mod.named_children()):
            full = next(n for n, m in net.named_modules() if m is child)
            if isinstance(child, nn.Conv2d) and f"{full}.weight" in sd:
                w = sd[f"{full}.weight"]
                b = sd.get(f"{full}.bias")
                setattr(mod, name, _plain_conv(child, torch.zeros_like(w, dtype=dtype), b))
            elif isinstance(child, nn.BatchNorm2d) and f"{full}.weight" in sd:
                setattr(
                    mod,
                    name,
                    nn.BatchNorm2d(
                        sd[f"{full}.weight"].shape[0],
                        eps=child.eps,
                        momentum=child.momentum,
                        affine=child.affine,
                        track_running_stats=child.track_running_stats,
                        dtype=dtype,
                    ),
                )
    net.to(dtype)
    try:
        net.load_state_dict(sd)
    except RuntimeError as e:
        raise ValueError(
            f"{path}: weights do not match the architecture ({str(e).splitlines()[0]})"
        ) from None
    return net.eval()


def count(model: nn.Module, input_size: tuple[int, ...] | None = None) -> dict[str, int]:
    """Parameters, active (non-zero) 3x3 kernels and stored conv weights of a (compact) model;
    with `input_size` (C, H, W) also dense and effective (active-kernel) multiply-accumulates."""
    params = sum(p.numel() for p in model.parameters())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    active = sum(int((c.weight.detach().abs().sum(dim=(2, 3)) > 0).sum()) for c in convs)
    total = sum(c.weight.shape[0] * c.weight.shape[1] for c in convs)
    out = {
        "params": params,
        "active_kernels": active,
        "total_kernels": total,
        "conv_weights_stored": sum(c.weight.numel() for c in convs),
        "conv_weights_active": sum(
            int((c.weight != 0).any(dim=(2, 3)).sum()) * c.weight[0, 0].numel() for c in convs
        ),
    }
    if input_size is not None:
        dense, eff = 0, 0
        hooks = []

        def hook(mod, inp, outp):
            nonlocal dense, eff
            area = outp.shape[-1] * outp.shape[-2]
            k = mod.weight[0, 0].numel()
            dense += mod.weight.shape[0] * mod.weight.shape[1] * k * area
            eff += int((mod.weight.detach().abs().sum(dim=(2, 3)) > 0).sum()) * k * area

        for c in convs:
            hooks.append(c.register_forward_hook(hook))
        with torch.no_grad():
            was = model.training
            model.eval()
            model(torch.zeros(2, *input_size))
            model.train(was)
        for h in hooks:
            h.remove()
        out["macs_dense"], out["macs_effective"] = dense, eff
    return out
