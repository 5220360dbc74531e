"""Teacher side (deliverable 2): train a teacher with ERM or Group DRO, or load one; cache its logits.

The official runs distil a frozen teacher (ERM, or a Group-DRO ResNet-50 for dedier on CUB/CelebA,
notes §1.5). Group DRO follows Sagawa et al. (ICLR 2020), online version: group weights
``q_g <- q_g * exp(eta * loss_g)``, renormalised, and the loss is ``sum_g q_g * loss_g`` over the groups
present in the batch. It needs training group labels, which only the teacher uses; the student's
distillation never sees a group label.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from paperworks_shared.files import atomic_torch_save

from .batches import DEFAULT_SCHEMA, unpack_batch
from .errors import CheckpointError, first_line

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
    q = torch.ones(n_groups or 1, device=device) / (n_groups or 1)
    for _ in tqdm(range(epochs), desc=f"teacher ({method})", disable=not progress):
        for raw in loader:
            b = unpack_batch(raw, batch_schema).to(device)
            losses = F.cross_entropy(model(b.x), b.y.long(), reduction="none")
            if method == "erm":
                loss = losses.mean()
            else:
                if b.g is None:
                    raise ValueError("Group DRO needs group labels: batches must be (x, y, g, idx)")
                onehot = F.one_hot(b.g.long(), n_groups).float()  # (B, G)
                counts = onehot.sum(0)
                g_loss = (onehot * losses[:, None]).sum(0) / counts.clamp_min(1)
                with torch.no_grad():
                    q = q * torch.exp(dro_eta * g_loss * (counts > 0))
                    q = q / q.sum()
                loss = (q * g_loss).sum()
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


def save_teacher(model: nn.Module, path: str | Path, meta: dict | None = None) -> None:
    """Save the teacher's weights (a state dict and a metadata dict: loadable with weights_only=True),
    atomically (temp file + rename)."""
    atomic_torch_save({"state_dict": model.state_dict(), "meta": meta or {}}, path)


def load_teacher(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights saved by `save_teacher` (or a bare state_dict) into ``model``; eval, grads off.

    The file is read with ``weights_only=True``; a missing, corrupt or foreign file raises
    `CheckpointError` naming the path."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"teacher checkpoint {str(path)!r} not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"teacher checkpoint {str(path)!r} cannot be read safely (corrupt, truncated or not a state dict): "
            f"{first_line(e)}"
        ) from e
    state = blob["state_dict"] if isinstance(blob, dict) and "state_dict" in blob else blob
    if not isinstance(state, dict):
        raise CheckpointError(f"teacher checkpoint {str(path)!r} holds no state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"teacher checkpoint {str(path)!r} does not fit the {type(model).__name__} built: {first_line(e)}"
        ) from e
    return model.eval().requires_grad_(False)
