"""Training loss, train / search / fine-tune loop and batched one-pass evaluation (OPE)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import (
    SEARCH_FACTOR,
    TEMPLATE_FACTOR,
    VideoSequence,
    _to_t,
    crop,
    crop_resize,
    frame_tensor,
    make_sequence,
    sample_pairs,
)
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


def model_config(model: nn.Module) -> dict[str, Any]:
    """The tracker's constructor kwargs (``template_size``, ``search_size``, ...)."""
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, dict):
        raise TypeError(
            f"{type(model).__name__} has no tracker config (build it with tracker_prune.trackers)"
        )
    return cfg


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
    batches=None,
    device=None,
) -> list[float]:
    """Adam training on random pairs; ``regularizer`` (a callable) is added to the loss (search phase).

    ``callback(step)`` runs after every step (ChipNet's temperature schedules); ``gate_lr`` gives the
    gate parameters (``*.zeta``) their own learning rate. Pairs come from the procedural ``pool``, or
    from ``batches`` (an iterator of (template, search, target) batches, e.g. `data.pair_loader` over
    real videos) when given. ``device``: where the model and the batches run (default: the model's).
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
    cfg = model_config(model)
    dev = torch.device(device) if device is not None else _device_of(model)
    model.to(dev)
    losses = []
    model.train()
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        if batches is not None:
            z, x, t = next(batches)
        else:
            z, x, t = sample_pairs(rng, batch, cfg["template_size"], cfg["search_size"], pool=pool)
        z, x, t = z.to(dev), x.to(dev), t.to(dev)
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


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def track_video(model: nn.Module, seq: VideoSequence, device=None, progress: bool = False) -> np.ndarray:
    """Track one real video from its first-frame box (the only box GOT-10k test gives), decoding each
    frame on access: template = `crop_resize` at ``TEMPLATE_FACTOR`` of frame 0, then per frame a search
    crop at ``SEARCH_FACTOR`` around the previous box, resized to the model's search size; the best
    cell's box is mapped back to frame pixels. Returns (T, 4) xywh with row 0 = the init box.
    """
    model.eval()
    dev = torch.device(device) if device is not None else _device_of(model)
    cfg = model_config(model)
    T, S = cfg["template_size"], cfg["search_size"]
    box = seq.init_box.copy()
    z, *_ = crop_resize(frame_tensor(seq.frame(0)), box, TEMPLATE_FACTOR, T)
    z = z[None].to(dev)
    out = [box.copy()]
    for t in tqdm(range(1, len(seq)), desc=seq.name, disable=not progress, leave=False):
        frame = frame_tensor(seq.frame(t))
        x, x0, y0, sc = crop_resize(frame, box, SEARCH_FACTOR, S)
        o = model(z, x[None].to(dev))
        best = int(o["score"][0].argmax())
        cx, cy, w, h = o["box"][0, best].double().cpu().numpy() / sc
        H, W = frame.shape[1:]
        # the box is kept inside the frame's size: an untrained model's growing boxes would otherwise
        # grow the next search crop without bound
        w, h = float(np.clip(w, 1.0, W)), float(np.clip(h, 1.0, H))
        cx, cy = float(np.clip(cx + x0, 0, W)), float(np.clip(cy + y0, 0, H))
        box = np.array([cx - w / 2, cy - h / 2, w, h])
        out.append(box.copy())
    return np.stack(out)


@torch.no_grad()
def run_ope(model: nn.Module, sequences, device=None, progress: bool = False) -> list[np.ndarray]:
    """One-pass evaluation: template from frame 0, search around the last box.

    Procedural ``(frames, boxes)`` sequences are batched across sequences with the fixed-scale
    crops the tiny trackers were trained on; real videos (`VideoSequence`) go through `track_video`
    (SiamFC/OSTrack crop and resize, frames decoded on access).
    """
    if sequences and isinstance(sequences[0], VideoSequence):
        return [track_video(model, s, device, progress) for s in sequences]
    model.eval()
    dev = torch.device(device) if device is not None else _device_of(model)
    cfg = model_config(model)
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
        out = model(z.to(dev), torch.stack(xs).to(dev))
        best = out["score"].argmax(1)
        bb = out["box"][torch.arange(len(best)), best].cpu().numpy()
        for k, (x0, y0) in enumerate(origins):
            cx, cy, w, h = bb[k]
            preds[k].append(np.array([cx + x0 - w / 2, cy + y0 - h / 2, w, h]))
    return [np.stack(p) for p in preds]


def evaluate(model: nn.Module, sequences, device=None, progress: bool = False) -> dict:
    """Official OPE metrics (`tracker_prune.metrics`) of ``model`` on procedural or real sequences.

    Real videos must carry full ground truth: GOT-10k test sequences are refused with the reason
    (run `run_ope` and write the predictions for the evaluation server instead).
    """
    if sequences and isinstance(sequences[0], VideoSequence):
        missing = [s.name for s in sequences if not s.has_full_gt]
        if missing:
            raise ValueError(
                f"{len(missing)} sequence(s) have ground truth for the first frame only ({missing[0]}, ...): "
                "GOT-10k test is scored by the evaluation server; write the predictions instead"
            )
        preds = run_ope(model, sequences, device, progress)
        return tracking_metrics(preds, [s.boxes for s in sequences], valid=[s.valid for s in sequences])
    preds = run_ope(model, sequences, device, progress)
    return tracking_metrics(preds, [b[: len(p)] for (_, b), p in zip(sequences, preds)])


def sequence_frames(seq) -> torch.Tensor:
    return torch.stack([_to_t(f) for f in seq[0]])
