"""Training loss, train / search / fine-tune loop and batched one-pass evaluation (OPE)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import _to_t, crop, make_sequence, sample_pairs
from .metrics import tracking_metrics


def tracking_loss(out: dict, target: torch.Tensor, search_size: int) -> torch.Tensor:
    """Cross-entropy over grid cells at the target centre + L1 of the box there (normalised).

    A simplified OSTrack loss (focal heatmap + L1 + GIoU in the paper); documented deviation.
    """
    score, box = out["score"], out["box"]
    G = int(round(score.shape[1] ** 0.5))
    cell = search_size / G
    gx = (target[:, 0] / cell).long().clamp(0, G - 1)
    gy = (target[:, 1] / cell).long().clamp(0, G - 1)
    idx = gy * G + gx
    ce = F.cross_entropy(score, idx)
    pred = box[torch.arange(len(idx)), idx]
    return ce + 5.0 * F.l1_loss(pred / search_size, target / search_size)


def make_pool(n: int, length: int = 12, seed: int = 0):
    return [make_sequence(seed * 7919 + k, length) for k in range(n)]


def train(
    model: nn.Module,
    steps: int,
    pool,
    batch: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    regularizer=None,
    desc: str = "train",
    progress: bool = False,
    callback=None,
    gate_lr: float | None = None,
) -> list[float]:
    """Adam training on random pairs; ``regularizer`` (a callable) is added to the loss (search phase).

    ``callback(step)`` runs after every step (ChipNet's temperature schedules); ``gate_lr`` gives the
    gate parameters (``*.zeta``) their own learning rate.
    """
    rng = np.random.default_rng(seed)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if gate_lr is None:
        opt = torch.optim.Adam(params, lr=lr)
    else:
        gates = [p for n, p in named if n.endswith("zeta")]
        rest = [p for n, p in named if not n.endswith("zeta")]
        opt = torch.optim.Adam([{"params": rest, "lr": lr}, {"params": gates, "lr": gate_lr}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    cfg = model.config
    losses = []
    model.train()
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        z, x, t = sample_pairs(rng, batch, cfg["template_size"], cfg["search_size"], pool=pool)
        loss = tracking_loss(model(z, x), t, cfg["search_size"])
        if regularizer is not None:
            loss = loss + regularizer()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if callback is not None:
            callback(step)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@torch.no_grad()
def run_ope(model: nn.Module, sequences) -> list[np.ndarray]:
    """One-pass evaluation, batched across sequences: template from frame 0, search around last box."""
    model.eval()
    cfg = model.config
    T, S = cfg["template_size"], cfg["search_size"]
    frames = [torch.from_numpy(f).permute(0, 3, 1, 2) - 0.5 for f, _ in sequences]
    boxes = [np.array(b[0], dtype=np.float64) for _, b in sequences]
    z = torch.stack([crop(fr[0], b[0] + b[2] / 2, b[1] + b[3] / 2, T)[0] for fr, b in zip(frames, boxes)])
    preds = [[b.copy()] for b in boxes]
    length = min(len(f) for f in frames)
    for t in range(1, length):
        xs, origins = [], []
        for k, fr in enumerate(frames):
            b = preds[k][-1]
            x, x0, y0 = crop(fr[t], b[0] + b[2] / 2, b[1] + b[3] / 2, S)
            xs.append(x)
            origins.append((x0, y0))
        out = model(z, torch.stack(xs))
        best = out["score"].argmax(1)
        bb = out["box"][torch.arange(len(best)), best].numpy()
        for k, (x0, y0) in enumerate(origins):
            cx, cy, w, h = bb[k]
            preds[k].append(np.array([cx + x0 - w / 2, cy + y0 - h / 2, w, h]))
    return [np.stack(p) for p in preds]


def evaluate(model: nn.Module, sequences) -> dict:
    preds = run_ope(model, sequences)
    return tracking_metrics(preds, [b[: len(p)] for (_, b), p in zip(sequences, preds)])


def sequence_frames(seq) -> torch.Tensor:
    return torch.stack([_to_t(f) for f in seq[0]])
