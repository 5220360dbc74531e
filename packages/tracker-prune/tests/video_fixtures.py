"""Generated GOT-10k and LaSOT folders in the real layouts and formats, at the real frame size.

GOT-10k (http://got-10k.aitestunion.com, toolkit `got10k`): ``<root>/{train,val,test}/list.txt`` and
``<root>/<split>/GOT-10k_<Split>_000001/{00000001.jpg, ..., groundtruth.txt, absence.label,
cover.label, cut_by_image.label, meta_info.ini}``; boxes ``x,y,w,h`` with four decimals and commas;
the test split's groundtruth.txt holds the first frame only and has no labels.
LaSOT: ``<root>/<class>/<class>-<k>/{img/00000001.jpg, ..., groundtruth.txt (integers, commas),
full_occlusion.txt, out_of_view.txt (one comma-separated line), nlp.txt}`` and ``testing_set.txt``.
Quirks reproduced: absent frames (GOT-10k absence 1 / cover 0; LaSOT a 0,0,0,0 box with the
occlusion flag), a target that leaves the frame (cut by image), a trailing newline missing in one file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

W, H = 640, 360


def _track(rng, n):
    x, y = rng.uniform(150, W - 250), rng.uniform(80, H - 160)
    w, h = rng.uniform(60, 110), rng.uniform(45, 90)
    v = rng.normal(0, 4, 2)
    boxes = []
    for _ in range(n):
        v = 0.9 * v + rng.normal(0, 1.5, 2)
        x, y = np.clip(x + v[0], -20, W - w + 20), np.clip(y + v[1], 0, H - h)
        boxes.append([x, y, w, h])
    return np.asarray(boxes)


def _frame(rng, box, bg, tex, visible=True):
    img = bg.copy()
    if visible:
        x, y, w, h = (int(round(v)) for v in box)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 > x0 and y1 > y0:
            img[y0:y1, x0:x1] = tex[: y1 - y0, : x1 - x0]
    img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(img)


def _scene(rng):
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([(xx * (0.2 + 0.3 * c) + yy * 0.3) % 255 for c in range(3)], -1)
    bg = (bg * 0.5 + 60).astype(np.uint8)
    period = int(rng.integers(6, 12))
    ty, tx = np.mgrid[0:200, 0:200]
    checker = ((ty // period + tx // period) % 2)[..., None]
    color = rng.integers(60, 200, 3)
    tex = np.clip(color + (checker - 0.5) * 120, 0, 255).astype(np.uint8)
    return bg, tex


def _write_seq(folder: Path, rng, n: int, absent: set[int]):
    folder.mkdir(parents=True, exist_ok=True)
    bg, tex = _scene(rng)
    boxes = _track(rng, n)
    for i, b in enumerate(boxes):
        _frame(rng, b, bg, tex, visible=i not in absent).save(folder / f"{i + 1:08d}.jpg", quality=90)
    return boxes


def make_got10k(root: Path, n_train=2, n_val=2, n_test=1, frames=12, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        names = [f"GOT-10k_{split.capitalize()}_{k + 1:06d}" for k in range(count)]
        (root / split).mkdir(parents=True, exist_ok=True)
        for k, name in enumerate(names):
            seq = root / split / name
            absent = {frames // 2} if split != "test" and k == 0 else set()
            boxes = _write_seq(seq, rng, frames, absent)
            lines = [",".join(f"{v:.4f}" for v in b) for b in boxes]
            if split == "test":
                lines = lines[:1]  # the rest is held by the evaluation server
            (seq / "groundtruth.txt").write_text("\n".join(lines) + "\n")
            if split != "test":
                absence = [int(i in absent) for i in range(frames)]
                cover = [0 if i in absent else int(rng.integers(3, 9)) for i in range(frames)]
                cut = [int(b[0] < 0 or b[0] + b[2] > W) for b in boxes]
                (seq / "absence.label").write_text("\n".join(map(str, absence)) + "\n")
                (seq / "cover.label").write_text("\n".join(map(str, cover)))  # no trailing newline
                (seq / "cut_by_image.label").write_text("\n".join(map(str, cut)) + "\n")
                (seq / "meta_info.ini").write_text(
                    f"[METAINFO]\nurl: https://example.invalid/{name}\nbegin_time: 00:00:00\n"
                    f"end_time: 00:00:10\nobject_class: toy\nmotion_class: moving\n"
                    f"major_class: toy\nroot_class: object\nmotion_adverb: slowly\nresolution: ({W}, {H})\n"
                )
        (root / split / "list.txt").write_text("\n".join(names) + "\n")
    return root


def make_lasot(root: Path, classes=("bird", "cat"), per_class=2, frames=10, seed=1) -> Path:
    rng = np.random.default_rng(seed)
    test = []
    for c in classes:
        for k in range(1, per_class + 1):
            name = f"{c}-{k}"
            seq = root / c / name
            absent = {3} if k == 1 else set()
            boxes = _write_seq(seq / "img", rng, frames, absent)
            rows = [[0, 0, 0, 0] if i in absent else [int(round(v)) for v in b] for i, b in enumerate(boxes)]
            (seq / "groundtruth.txt").write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
            occ = [int(i in absent) for i in range(frames)]
            (seq / "full_occlusion.txt").write_text(",".join(map(str, occ)))
            (seq / "out_of_view.txt").write_text(",".join(["0"] * frames))
            (seq / "nlp.txt").write_text(f"the {c} moving around\n")
            if k == 1:
                test.append(name)
    (root / "testing_set.txt").write_text("\n".join(test) + "\n")
    return root
