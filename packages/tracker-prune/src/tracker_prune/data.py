"""Procedural single-object-tracking data (DESIGN.md §3.2) and lazy GOT-10k / LaSOT loaders.

A sequence: 96x96 RGB frames of smooth colour clutter, a 12-22 px target with a per-sequence
checker texture moving by a smooth AR(1) random walk, and distractors of the *same mean colour*
but flat texture, so a tracker must use texture and not colour. Boxes are xywh floats.

Real videos (`load_got10k`, `load_lasot`) are `VideoSequence` objects that hold file paths and the
annotation arrays only: a frame is decoded when it is asked for (`seq.frame(i)`), so a whole split
costs a few KiB per sequence until it is used. `crop_resize` is the SiamFC/OSTrack crop: a square of
side ``sqrt(w*h) * factor`` around the box centre, zero-padded outside the frame, resized to a fixed
size; `PairDataset` samples training pairs from such videos for a `torch.utils.data.DataLoader`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


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


def crop(frame: torch.Tensor, cx: float, cy: float, size: int) -> tuple[torch.Tensor, int, int]:
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

    rows: dict[str, list] = {"seed": [], "frames": [], "boxes": []}
    for k in range(n):
        f, b = make_sequence(seed * 100003 + k, length)
        rows["seed"].append(seed * 100003 + k)
        rows["frames"].append(f)
        rows["boxes"].append(b)
    return datasets.Dataset.from_dict(rows).with_format("numpy")


# --------------------------------------------------------------------------------------------------
# Real videos: lazy GOT-10k / LaSOT sequences (issue 23), SiamFC/OSTrack crops, a DataLoader dataset

GOT10K_SPLITS = ("train", "val", "test")
TEMPLATE_FACTOR = 2.0  # OSTrack: template = 2x the target's sqrt(w*h), search = 4x (DESIGN.md §2)
SEARCH_FACTOR = 4.0


@dataclass
class VideoSequence:
    """One video, decoded on access. ``boxes`` holds the annotated frames (GOT-10k test: frame 0 only).

    ``valid`` marks frames where the target is visible (GOT-10k: ``absence == 0`` and ``cover > 0``;
    LaSOT: neither full occlusion nor out of view); ``cover`` is GOT-10k's 0-8 visible-ratio label.
    """

    name: str
    frame_paths: list[Path]
    boxes: np.ndarray
    valid: np.ndarray | None = None
    cover: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def has_full_gt(self) -> bool:
        return len(self.boxes) == len(self.frame_paths)

    @property
    def init_box(self) -> np.ndarray:
        return np.asarray(self.boxes[0], np.float64)

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as (H, W, 3) uint8, decoded now (a corrupt file raises ValueError naming it)."""
        from PIL import Image

        path = self.frame_paths[i]
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, SyntaxError) as e:  # PIL raises these for truncated / foreign files
            raise ValueError(f"{path}: cannot decode frame ({e})") from e


def _read_boxes(path: Path) -> np.ndarray:
    """groundtruth.txt: one ``x,y,w,h`` per line (commas; tabs / spaces tolerated, blank lines skipped)."""
    rows = []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = [x for x in re.split(r"[,\s]+", line) if x]
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            raise ValueError(f"{path}:{ln}: not a box: {line!r}") from None
        if len(vals) != 4:
            raise ValueError(f"{path}:{ln}: expected 4 numbers x,y,w,h, found {len(vals)}: {line!r}")
        rows.append(vals)
    if not rows:
        raise ValueError(f"{path}: no boxes")
    return np.asarray(rows, np.float64)


def _read_labels(path: Path, n: int) -> np.ndarray | None:
    """A per-frame integer label file (one per line, or one comma-separated line as LaSOT's)."""
    if not path.exists():
        return None
    vals = [int(float(x)) for x in re.split(r"[,\s]+", path.read_text().strip()) if x]
    if len(vals) != n:
        raise ValueError(f"{path}: {len(vals)} labels for {n} frames")
    return np.asarray(vals, np.int64)


def _frames(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _listing(base: Path, names: list[str] | None) -> list[str]:
    listing = base / "list.txt"
    if names is not None:
        return list(names)
    if listing.exists():
        return listing.read_text().split()
    return sorted(p.name for p in base.iterdir() if p.is_dir())


def _check_max(max_sequences: int | None) -> None:
    if max_sequences is not None and max_sequences < 1:
        raise ValueError(f"max_sequences must be >= 1, got {max_sequences}")


def load_got10k(
    root: str | Path, split: str = "train", max_sequences: int | None = None
) -> list[VideoSequence]:
    """Lazy GOT-10k sequences from ``root/<split>/<seq>/{00000001.jpg, ..., groundtruth.txt, *.label}``.

    Only annotations are read here (arguments and the layout are checked before anything is decoded).
    ``train`` / ``val``: every frame has a box; ``absence.label`` and ``cover.label`` (when present)
    give ``valid`` and ``cover``. ``test``: the ground truth holds the first frame only (the rest is on
    the evaluation server), so the sequence keeps all its frames with ``has_full_gt == False``; the
    tracker runs from the first-frame box (`tracker_prune.train.run_ope`) and the predictions are
    written for submission (`write_got10k_results`), never scored as 1-frame sequences.
    """
    if split not in GOT10K_SPLITS:
        raise ValueError(f"GOT-10k split must be one of {GOT10K_SPLITS}, got {split!r}")
    _check_max(max_sequences)
    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(2, f"no GOT-10k {split} split folder (expected <root>/{split}/)", str(base))
    out = []
    for name in _listing(base, None)[:max_sequences]:
        seq = base / name
        gt_file = seq / "groundtruth.txt"
        if not gt_file.is_file():
            raise FileNotFoundError(2, "GOT-10k sequence without groundtruth.txt", str(gt_file))
        boxes = _read_boxes(gt_file)
        frames = _frames(seq)
        if split == "test":
            if len(boxes) != 1 and len(boxes) != len(frames):
                raise ValueError(
                    f"{seq}: test ground truth must hold the first frame only, found {len(boxes)}"
                )
            boxes = boxes[:1]
            valid = cover = None
        else:
            if len(frames) != len(boxes):
                raise ValueError(f"{seq}: {len(frames)} frames but {len(boxes)} boxes")
            absence = _read_labels(seq / "absence.label", len(boxes))
            cover = _read_labels(seq / "cover.label", len(boxes))
            valid = np.ones(len(boxes), bool)
            if absence is not None:
                valid &= absence == 0
            if cover is not None:
                valid &= cover > 0
        if not frames:
            raise ValueError(f"{seq}: no frames")
        out.append(VideoSequence(name, frames, boxes, valid, cover))
    return out


def load_lasot(
    root: str | Path,
    split: str = "test",
    max_sequences: int | None = None,
    names: list[str] | None = None,
) -> list[VideoSequence]:
    """Lazy LaSOT sequences from ``root/<class>/<class>-<k>/{img/00000001.jpg, groundtruth.txt,
    full_occlusion.txt, out_of_view.txt}``.

    ``split="test"`` reads ``root/testing_set.txt`` (the official 280-sequence protocol II list; the
    train split is every other sequence); ``split="all"`` takes every sequence; ``names`` overrides.
    ``valid`` = neither fully occluded nor out of view.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"LaSOT split must be train, test or all, got {split!r}")
    _check_max(max_sequences)
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(2, "no LaSOT folder", str(base))
    every = sorted(
        f"{c.name}/{s.name}" for c in base.iterdir() if c.is_dir() for s in c.iterdir() if s.is_dir()
    )
    if names is None and split != "all":
        listing = base / "testing_set.txt"
        if not listing.is_file():
            raise FileNotFoundError(2, f"LaSOT split {split!r} needs testing_set.txt", str(listing))
        test = {n.strip() for n in listing.read_text().split() if n.strip()}
        names = (
            [n for n in every if n.split("/")[1] in test]
            if split == "test"
            else [n for n in every if n.split("/")[1] not in test]
        )
    elif names is None:
        names = every
    else:
        names = [n if "/" in n else f"{n.rsplit('-', 1)[0]}/{n}" for n in names]
    out = []
    for name in names[:max_sequences]:
        seq = base / name
        gt_file = seq / "groundtruth.txt"
        if not gt_file.is_file():
            raise FileNotFoundError(2, "LaSOT sequence without groundtruth.txt", str(gt_file))
        boxes = _read_boxes(gt_file)
        frames = _frames(seq / "img") if (seq / "img").is_dir() else []
        if len(frames) != len(boxes):
            raise ValueError(f"{seq}: {len(frames)} frames in img/ but {len(boxes)} boxes")
        valid = np.ones(len(boxes), bool)
        for label in ("full_occlusion.txt", "out_of_view.txt"):
            v = _read_labels(seq / label, len(boxes))
            if v is not None:
                valid &= v == 0
        out.append(VideoSequence(name.split("/")[-1], frames, boxes, valid))
    return out


def write_got10k_results(preds: dict[str, np.ndarray], times: dict[str, np.ndarray], out_dir: Path) -> Path:
    """The GOT-10k submission layout: ``<out>/<seq>/<seq>_001.txt`` (boxes) and ``<seq>_time.txt``."""
    from paperworks_shared.files import atomic_write_text

    out_dir = Path(out_dir)
    for name, boxes in preds.items():
        d = out_dir / name
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            d / f"{name}_001.txt", "".join(",".join(f"{v:.4f}" for v in b) + "\n" for b in boxes)
        )
        atomic_write_text(d / f"{name}_time.txt", "".join(f"{t:.6f}\n" for t in times[name]))
    return out_dir


def crop_resize(
    frame: torch.Tensor, box, factor: float, out_size: int
) -> tuple[torch.Tensor, float, float, float]:
    """SiamFC/OSTrack crop: side ``ceil(sqrt(w*h)*factor)`` centred on ``box`` (xywh), zero-padded
    outside the frame, resized (bilinear) to ``out_size``. Returns (crop (C,S,S), x0, y0, scale) with
    ``frame_xy = (x0, y0) + crop_xy / scale``.
    """
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0 and np.isfinite([x, y, w, h]).all()):
        raise ValueError(f"crop_resize needs a box with positive size, got {box}")
    side = max(int(np.ceil(np.sqrt(w * h) * factor)), 1)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    C, H, W = frame.shape
    patch = frame.new_zeros(C, side, side)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, W), min(y0 + side, H)
    if sx1 > sx0 and sy1 > sy0:
        patch[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame[:, sy0:sy1, sx0:sx1]
    if side != out_size:
        patch = F.interpolate(patch[None], size=(out_size, out_size), mode="bilinear", align_corners=False)[0]
    return patch, float(x0), float(y0), out_size / side


def frame_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 or float [0, 1] -> (3, H, W) float32 centred at 0 (the trackers' input range)."""
    arr = np.ascontiguousarray(frame)
    if not arr.flags.writeable:  # PIL-backed arrays are read-only
        arr = arr.copy()
    t = torch.from_numpy(arr).permute(2, 0, 1)
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    return t - 0.5


class PairDataset(torch.utils.data.Dataset):
    """Training pairs from lazy videos for a DataLoader (workers decode in parallel; nothing is cached).

    Item ``k`` (deterministic in ``seed`` and ``k``): a random sequence, a template frame i and a search
    frame j with ``|i - j| <= max_gap``, both with visible targets; the template is the
    `crop_resize` of frame i at ``TEMPLATE_FACTOR``, the search crop is centred on frame j's box
    shifted by up to ``jitter`` of its size and rescaled by up to ``2**±scale_jitter``. Returns
    (template, search, target (cx, cy, w, h) in search-crop pixels).
    """

    def __init__(
        self,
        sequences: list[VideoSequence],
        length: int,
        template_size: int = 32,
        search_size: int = 64,
        max_gap: int = 50,
        jitter: float = 0.25,
        scale_jitter: float = 0.25,
        seed: int = 0,
    ):
        usable = [s for s in sequences if s.has_full_gt and _visible(s).sum() >= 1]
        if not usable:
            raise ValueError("no sequence with full ground truth and a visible target to train on")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.sequences, self.length = usable, length
        self.template_size, self.search_size = template_size, search_size
        self.max_gap, self.jitter, self.scale_jitter, self.seed = max_gap, jitter, scale_jitter, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int):
        rng = np.random.default_rng([self.seed, k])
        seq = self.sequences[int(rng.integers(len(self.sequences)))]
        vis = np.flatnonzero(_visible(seq))
        i = int(rng.choice(vis))
        near = vis[np.abs(vis - i) <= self.max_gap]
        j = int(rng.choice(near))
        bi, bj = seq.boxes[i], seq.boxes[j]
        z, *_ = crop_resize(frame_tensor(seq.frame(i)), bi, TEMPLATE_FACTOR, self.template_size)
        shift = rng.uniform(-self.jitter, self.jitter, 2) * np.sqrt(bj[2] * bj[3])
        s = 2.0 ** rng.uniform(-self.scale_jitter, self.scale_jitter)
        c = bj[:2] + bj[2:] / 2 + shift
        ref = [c[0] - bj[2] * s / 2, c[1] - bj[3] * s / 2, bj[2] * s, bj[3] * s]
        x, x0, y0, sc = crop_resize(frame_tensor(seq.frame(j)), ref, SEARCH_FACTOR, self.search_size)
        t = torch.tensor(
            [(bj[0] + bj[2] / 2 - x0) * sc, (bj[1] + bj[3] / 2 - y0) * sc, bj[2] * sc, bj[3] * sc],
            dtype=torch.float32,
        )
        return z, x, t


def _visible(seq: VideoSequence) -> np.ndarray:
    b = np.asarray(seq.boxes, float)
    ok = np.isfinite(b).all(1) & (b[:, 2] > 0) & (b[:, 3] > 0)
    return ok if seq.valid is None else ok & seq.valid


def pair_loader(dataset: PairDataset, batch: int, workers: int = 0):
    """An endless iterator of (template, search, target) batches from ``dataset`` (DataLoader workers)."""

    def gen():
        epoch = 0
        while True:
            g = torch.Generator().manual_seed(dataset.seed * 1000003 + epoch)
            dl = torch.utils.data.DataLoader(
                dataset, batch_size=batch, shuffle=True, num_workers=workers, generator=g, drop_last=False
            )
            yield from dl
            epoch += 1

    return gen()
