"""Teacher side (deliverable 2): train a teacher with ERM or Group DRO, or load one; cache its logits.

The official runs distil a frozen teacher (ERM, or a Group-DRO ResNet-50 for dedier on CUB/CelebA,
DESIGN.md §1.5). Group DRO is `paperworks_shared.dro.GroupDROLoss` (Sagawa et al., ICLR 2020, online
version: ``q_g <- q_g * exp(eta * loss_g)`` renormalised, loss ``sum_g q_g * loss_g``; shared with
feature-sieve, issue 20.7). It needs training group labels, which only the teacher uses; the student's
distillation never sees a group label.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from paperworks_shared.checkpoint import save_checkpoint
from paperworks_shared.dro import GroupDROLoss

from .batches import DEFAULT_SCHEMA, unpack_batch
from .errors import CheckpointError, first_line, read_checkpoint

METHODS = ("erm", "group_dro")


def train_teacher(
    model: nn.Module,
    loader: Iterable,
    epochs: int,
    method: str = "erm",
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    momentum: float = 0.9,
    n_groups: int | None = None,
    dro_eta: float = 0.01,
    device: str | torch.device = "cpu",
    progress: bool = True,
    batch_schema=DEFAULT_SCHEMA,
) -> nn.Module:
    """Train ``model`` in place with SGD; returns it in eval mode with gradients off."""
    if method not in METHODS:
        raise ValueError(f"unknown teacher method {method!r}; choose one of {METHODS}")
    if method == "group_dro" and not n_groups:
        raise ValueError("Group DRO needs n_groups (and group labels in every batch)")
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    dro = GroupDROLoss(n_groups, eta=dro_eta).to(device) if method == "group_dro" and n_groups else None
    for _ in tqdm(range(epochs), desc=f"teacher ({method})", disable=not progress):
        for raw in loader:
            b = unpack_batch(raw, batch_schema).to(device)
            losses = F.cross_entropy(model(b.x), b.y.long(), reduction="none")
            if method == "erm":
                loss = losses.mean()
            else:
                if b.g is None or dro is None:
                    raise ValueError("Group DRO needs group labels: batches must be (x, y, g, idx)")
                loss = dro(losses, b.g.long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def compute_logits(
    model: nn.Module, loader: Iterable, num_examples: int, device="cpu", batch_schema=DEFAULT_SCHEMA
) -> torch.Tensor:
    """Logits of ``model`` for every dataset index of ``loader`` (a (num_examples, C) tensor)."""
    model.to(device).eval()
    out = None
    seen = torch.zeros(num_examples, dtype=torch.bool)
    for raw in loader:
        b = unpack_batch(raw, batch_schema).to(device)
        z = model(b.x).float()
        if out is None:
            out = torch.zeros(num_examples, z.shape[1], device=device)
        if seen[b.idx.cpu()].any():
            raise ValueError(
                f"the loader yielded a dataset index twice (e.g. {b.idx[seen[b.idx.cpu()]][:3].tolist()}): "
                f"its index field is not a dataset index (batch_schema={tuple(batch_schema)})"
            )
        out[b.idx] = z
        seen[b.idx.cpu()] = True
    if out is None or not seen.all():
        raise ValueError(f"the loader covered {int(seen.sum())} of {num_examples} dataset indices")
    return out


TEACHER_KIND = "early-readout-teacher"


def save_teacher(model: nn.Module, path: str | Path, meta: dict | None = None) -> None:
    """Save the teacher's weights atomically as a ``paperworks_shared.checkpoint`` of kind
    ``early-readout-teacher`` (loadable with weights_only=True)."""
    save_checkpoint(path, model.state_dict(), kind=TEACHER_KIND, meta=meta)


def load_teacher(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights saved by `save_teacher` into ``model``; eval mode, grads off.

    The file is read with ``weights_only=True``; a missing, corrupt, foreign or wrong-kind file (e.g. a
    student checkpoint) or one that does not fit ``model`` raises `CheckpointError` naming the path."""
    state, _ = read_checkpoint(path, kind=TEACHER_KIND)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: teacher checkpoint does not fit the {type(model).__name__} built: {first_line(e)}"
        ) from e
    return model.eval().requires_grad_(False)
