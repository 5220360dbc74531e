"""Procedural single-object-tracking data (notes §3.2) and a GOT-10k folder loader.

A sequence: 96x96 RGB frames of smooth colour clutter, a 12-22 px target with a per-sequence
checker texture moving by a smooth AR(1) random walk, and distractors of the *same mean colour*
but flat texture, so a tracker must use texture and not colour. Boxes are xywh floats.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _background(rng, size):
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for _ in range(6):
        cx, cy, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.4)
        img += rng.uniform(-0.5, 0.5, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))[..., None]
    for _ in range(8):
        x, y, w, h = rng.integers(0, size, 4)
        img[y : y + h // 3 + 2, x : x + w // 3 + 2] += rng.uniform(-0.3, 0.3, 3)
    return np.clip(img + 0.5, 0, 1)


def _texture(rng, h, w, color):
    period = rng.integers(3, 6)
    yy, xx = np.mgrid[0:h, 0:w]
    checker = (((yy // period) + (xx // period)) % 2)[..., None]
    return np.clip(color + (checker - 0.5) * 0.6, 0, 1)


def make_sequence(seed: int, length: int = 40, size: int = 96, n_distractors: int = 2):
    """Frames (T, H, W, 3) float32 in [0, 1] and boxes (T, 4) xywh float32."""
    rng = np.random.default_rng(seed)
    bg = _background(rng, size)
    color = rng.uniform(0.2, 0.8, 3)
    w, h = rng.uniform(12, 22, 2)
    pos = rng.uniform(20, size - 20 - np.array([w, h]))
    vel = rng.normal(0, 1.5, 2)
    dis = [
        (rng.uniform(5, size - 25, 2), rng.normal(0, 1.5, 2), rng.uniform(10, 20, 2))
        for _ in range(n_distractors)
    ]
    tex = _texture(rng, 40, 40, color)
    frames, boxes = [], []
    for _ in range(length):
        img = bg.copy()
        for i, (p, v, s) in enumerate(dis):
            v = 0.9 * v + rng.normal(0, 0.6, 2)
            p = np.clip(p + v, 0, size - s)
            dis[i] = (p, v, s)
            x, y = p.astype(int)
            img[y : y + int(s[1]), x : x + int(s[0])] = color
        vel = 0.9 * vel + rng.normal(0, 0.6, 2)
        pos = pos + vel
        for k, lim in enumerate((size - w, size - h)):
            if pos[k] < 0 or pos[k] > lim:
                vel[k] = -vel[k]
                pos[k] = np.clip(pos[k], 0, lim)
        w, h = np.clip(np.array([w, h]) * rng.uniform(0.98, 1.02, 2), 10, 26)
        x0, y0 = int(round(pos[0])), int(round(pos[1]))
        x1, y1 = min(size, int(round(pos[0] + w))), min(size, int(round(pos[1] + h)))
        img[y0:y1, x0:x1] = tex[: y1 - y0, : x1 - x0]
        frames.append(img.astype(np.float32))
        boxes.append([x0, y0, x1 - x0, y1 - y0])
    return np.stack(frames), np.asarray(boxes, np.float32)


def crop(frame: torch.Tensor, cx: float, cy: float, size: int) -> torch.Tensor:
    """A size x size crop (C, size, size) centred at (cx, cy), zero-padded outside the frame."""
    C, H, W = frame.shape
    x0, y0 = int(round(cx - size / 2)), int(round(cy - size / 2))
    out = frame.new_zeros(C, size, size)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + size, W), min(y0 + size, H)
    if sx1 > sx0 and sy1 > sy0:
        out[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame[:, sy0:sy1, sx0:sx1]
    return out, x0, y0


def _to_t(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1) - 0.5


def sample_pairs(rng: np.random.Generator, n: int, template_size=32, search_size=64, jitter=10.0, pool=None):
    """Training pairs: template around the target in frame i, search around a jittered centre in frame j.

    Returns template (n,3,T,T), search (n,3,S,S) and the target box (n,4) as (cx,cy,w,h) in search pixels.
    """
    zs, xs, bs = [], [], []
    for _ in range(n):
        frames, boxes = (
            pool[rng.integers(len(pool))] if pool else make_sequence(int(rng.integers(1 << 30)), 12)
        )
        i, j = sorted(rng.integers(0, len(frames), 2))
        bi, bj = boxes[i], boxes[j]
        z, _, _ = crop(_to_t(frames[i]), bi[0] + bi[2] / 2, bi[1] + bi[3] / 2, template_size)
        c = bj[:2] + bj[2:] / 2 + rng.uniform(-jitter, jitter, 2)
        x, x0, y0 = crop(_to_t(frames[j]), c[0], c[1], search_size)
        zs.append(z)
        xs.append(x)
        bs.append([bj[0] + bj[2] / 2 - x0, bj[1] + bj[3] / 2 - y0, bj[2], bj[3]])
    return torch.stack(zs), torch.stack(xs), torch.tensor(bs, dtype=torch.float32)


def sequences_dataset(n: int, length: int = 40, seed: int = 0):
    """``n`` procedural sequences as a Hugging Face ``datasets.Dataset`` (columns frames, boxes, seed)."""
    import datasets

    rows = {"seed": [], "frames": [], "boxes": []}
    for k in range(n):
        f, b = make_sequence(seed * 100003 + k, length)
        rows["seed"].append(seed * 100003 + k)
        rows["frames"].append(f)
        rows["boxes"].append(b)
    return datasets.Dataset.from_dict(rows).with_format("numpy")


def load_got10k(root: str | Path, split: str = "train", max_sequences: int | None = None):
    """Sequences from a local GOT-10k folder: ``root/split/<seq>/{00000001.jpg..., groundtruth.txt}``.

    Returns a list of (frames (T,H,W,3) float32 in [0,1], boxes (T,4) xywh). No download.
    """
    from PIL import Image

    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(f"no GOT-10k split folder at {base}")
    listing = base / "list.txt"
    names = (
        listing.read_text().split()
        if listing.exists()
        else sorted(p.name for p in base.iterdir() if p.is_dir())
    )
    out = []
    for name in names[:max_sequences]:
        seq = base / name
        gt_file = seq / "groundtruth.txt"
        if not gt_file.exists():
            raise FileNotFoundError(f"{seq} has no groundtruth.txt")
        boxes = np.loadtxt(gt_file, delimiter=",", ndmin=2).astype(np.float32)
        imgs = sorted(seq.glob("*.jpg"))
        if len(imgs) < len(boxes):
            raise ValueError(f"{seq}: {len(imgs)} frames but {len(boxes)} boxes")
        frames = np.stack(
            [np.asarray(Image.open(p).convert("RGB"), np.float32) / 255 for p in imgs[: len(boxes)]]
        )
        out.append((frames, boxes))
    return out
