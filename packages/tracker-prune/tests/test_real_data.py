"""Real-data path (issue 23): lazy GOT-10k / LaSOT loaders on generated folders in the real layouts at
640x360, SiamFC/OSTrack crops, DataLoader pairs, official metrics, the CLI end to end, bounded memory,
and slimmed timm models saved and rebuilt."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tracker_prune.data import (
    PairDataset,
    VideoSequence,
    crop_resize,
    load_got10k,
    load_lasot,
    pair_loader,
)
from tracker_prune.metrics import tracking_metrics
from tracker_prune.train import evaluate, run_ope, track_video

_spec = importlib.util.spec_from_file_location(
    "tp_video_fixtures", Path(__file__).with_name("video_fixtures.py")
)
vf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vf)


@pytest.fixture(scope="module")
def got(tmp_path_factory):
    return vf.make_got10k(tmp_path_factory.mktemp("got10k"))


@pytest.fixture(scope="module")
def lasot(tmp_path_factory):
    return vf.make_lasot(tmp_path_factory.mktemp("lasot"))


def test_got10k_layout_labels_and_lazy(got, monkeypatch):
    decoded = []
    orig = VideoSequence.frame
    monkeypatch.setattr(VideoSequence, "frame", lambda self, i: decoded.append(i) or orig(self, i))
    train = load_got10k(got, "train")
    val = load_got10k(got, "val")
    assert [s.name for s in train] == ["GOT-10k_Train_000001", "GOT-10k_Train_000002"]
    assert decoded == []  # listing a split decodes nothing
    s = val[0]
    assert len(s) == 12 and s.boxes.shape == (12, 4) and s.has_full_gt
    # absence.label / cover.label: the absent frame (6) is not valid, the others are
    assert s.valid.tolist() == [i != 6 for i in range(12)]
    assert s.cover[6] == 0 and (np.delete(s.cover, 6) >= 3).all()
    assert np.allclose(
        s.boxes[0],
        [float(v) for v in (got / "val" / s.name / "groundtruth.txt").read_text().split("\n")[0].split(",")],
    )
    f = s.frame(3)
    assert f.shape == (360, 640, 3) and f.dtype == np.uint8 and decoded == [3]


def test_got10k_test_split_keeps_every_frame_and_is_never_scored_as_one_frame(got):
    (seq,) = load_got10k(got, "test")
    assert len(seq) == 12 and seq.boxes.shape == (1, 4) and not seq.has_full_gt
    from tracker_prune.trackers import build_tracker

    torch.manual_seed(0)
    m = build_tracker("cnn")
    (pred,) = run_ope(m, [seq])
    assert pred.shape == (12, 4) and np.allclose(pred[0], seq.boxes[0])  # tracked from the first box
    with pytest.raises(ValueError, match="first frame only"):
        evaluate(m, [seq])
    with pytest.raises(ValueError, match="cannot be scored locally"):
        tracking_metrics([pred], [seq.boxes])


def test_loader_arguments_are_checked_before_decoding(got, tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_got10k(got, "validation")
    with pytest.raises(ValueError, match="max_sequences"):
        load_got10k(got, "train", max_sequences=0)
    with pytest.raises(FileNotFoundError):
        load_got10k(tmp_path, "train")
    bad = tmp_path / "val" / "GOT-10k_Val_000001"
    bad.mkdir(parents=True)
    (bad / "00000001.jpg").write_bytes(b"")
    (bad / "groundtruth.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="groundtruth.txt:1: expected 4 numbers"):
        load_got10k(tmp_path, "val")
    (bad / "groundtruth.txt").write_text("1,2,3,4\n1,2,3,4\n")
    with pytest.raises(ValueError, match="1 frames but 2 boxes"):
        load_got10k(tmp_path, "val")
    (bad / "groundtruth.txt").write_text("1,2,3,4\n")
    (seq,) = load_got10k(tmp_path, "val")
    with pytest.raises(ValueError, match="00000001.jpg: cannot decode"):
        seq.frame(0)


def test_lasot_layout_split_and_occlusion(lasot):
    test = load_lasot(lasot, "test")
    train = load_lasot(lasot, "train")
    assert [s.name for s in test] == ["bird-1", "cat-1"] and [s.name for s in train] == ["bird-2", "cat-2"]
    s = test[0]
    assert len(s) == 10 and s.frame(0).shape == (360, 640, 3)
    assert s.valid.tolist() == [i != 3 for i in range(10)]  # full_occlusion.txt (one comma line)
    assert s.boxes[3].tolist() == [0, 0, 0, 0]
    assert len(load_lasot(lasot, "all")) == 4
    with pytest.raises(ValueError, match="split"):
        load_lasot(lasot, "val")


def test_crop_resize_geometry_and_padding():
    frame = torch.zeros(3, 360, 640)
    frame[:, 100:140, 200:280] = 1.0  # box x=200, y=100, w=80, h=40
    box = [200, 100, 80, 40]
    crop, x0, y0, sc = crop_resize(frame, box, 2.0, 64)
    side = int(np.ceil(np.sqrt(80 * 40) * 2))
    assert sc == pytest.approx(64 / side) and crop.shape == (3, 64, 64)
    # the target lands centred with size (80, 40) * scale; map its crop bbox back to frame pixels
    ys, xs = torch.nonzero(crop[0] > 0.5, as_tuple=True)
    cx, cy = (xs.float().mean() + 0.5) / sc + x0, (ys.float().mean() + 0.5) / sc + y0
    assert abs(float(cx) - 240) < 1.0 and abs(float(cy) - 120) < 1.0
    assert abs(float(xs.max() - xs.min() + 1) - 80 * sc) <= 1.5
    # a box at the corner: the part outside the frame is zero padding
    crop, x0, y0, _ = crop_resize(frame + 1, [0, 0, 20, 20], 4.0, 40)
    assert (
        x0 < 0 and y0 < 0 and float(crop[:, 0, 0].abs().max()) == 0.0 and float(crop[:, -1, -1].min()) > 0.5
    )
    with pytest.raises(ValueError, match="positive size"):
        crop_resize(frame, [0, 0, 0, 0], 2.0, 32)


class _Shift(torch.nn.Module):
    """A stub tracker whose best cell always predicts the search-crop centre moved by (dx, 0) px and a
    box of side crop/4 (= the previous box's sqrt(w*h) at factor 4)."""

    def __init__(self, dx):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.dx = dx
        self.config = {"template_size": 32, "search_size": 64}

    def forward(self, z, x):
        B = x.shape[0]
        box = torch.tensor([32.0 + self.dx, 32.0, 16.0, 16.0]).repeat(B, 4, 1)
        return {"score": torch.zeros(B, 4) + self.w, "box": box}


def test_track_video_maps_search_crop_predictions_back_to_frame_pixels():
    frames = [np.zeros((360, 640, 3), np.uint8)] * 4

    class Mem(VideoSequence):
        def frame(self, i):
            return frames[i]

    seq = Mem("s", [Path(f"{i}.jpg") for i in range(4)], np.array([[300.0, 150.0, 40.0, 40.0]]))
    pred = track_video(_Shift(8.0), seq)
    # crop side = ceil(40*4) = 160 px -> scale 64/160; a shift of 8 crop px is 20 frame px per frame
    assert np.allclose(pred[:, 0] + pred[:, 2] / 2, [320, 340, 360, 380])
    assert np.allclose(pred[:, 1] + pred[:, 3] / 2, 170) and np.allclose(pred[1:, 2:], 40.0)


class _Grow(_Shift):
    """A stub whose best box always fills the whole search crop (an untrained tracker's worst case)."""

    def forward(self, z, x):
        B = x.shape[0]
        return {
            "score": torch.zeros(B, 4) + self.w,
            "box": torch.tensor([32.0, 32.0, 64.0, 64.0]).repeat(B, 4, 1),
        }


def test_track_video_keeps_the_box_within_the_frame_size():
    """Without the clamp each frame's box is 4x the last one (crop side = 4 sqrt(wh)), and the next
    search crop grows without bound (it ran out of memory on 12 real frames)."""
    frames = [np.zeros((360, 640, 3), np.uint8)] * 12

    class Mem(VideoSequence):
        def frame(self, i):
            return frames[i]

    seq = Mem("s", [Path(f"{i}.jpg") for i in range(12)], np.array([[300.0, 150.0, 40.0, 40.0]]))
    pred = track_video(_Grow(0.0), seq)
    assert (pred[:, 2] <= 640).all() and (pred[:, 3] <= 360).all() and pred[-1, 2] == 640


def test_pair_dataset_dataloader_workers_and_determinism(got):
    seqs = load_got10k(got, "train")
    ds = PairDataset(seqs, length=6, seed=3)
    z, x, t = ds[0]
    assert z.shape == (3, 32, 32) and x.shape == (3, 64, 64)
    assert (t[:2] > 0).all() and (t[:2] < 64).all() and (t[2:] > 4).all()
    a = [b[2] for b in torch.utils.data.DataLoader(ds, batch_size=3, num_workers=0)]
    b = [b[2] for b in torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))  # decoded in workers, same items
    it = pair_loader(ds, batch=4)
    assert next(it)[0].shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="full ground truth"):
        PairDataset(load_got10k(got, "test"), length=2)


def test_cli_end_to_end_on_got10k_and_lasot(got, lasot, tmp_path, capsys):
    from tracker_prune.cli import main

    common = ["--test-sequences", "1", "--no-progress", "--threads", "1"]
    rc = main(
        ["train", "--arch", "cnn", "--steps", "2", "--batch", "2", "--out", str(tmp_path / "d")]
        + ["--data-root", str(got), "--dataset", "got10k", "--workers", "1", *common]
    )
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((tmp_path / "d" / "result.json").read_text())
    assert 0.0 <= rec["auc"] <= 1.0 and "precision_2px" in rec
    rc = main(
        ["evaluate", "--model", str(tmp_path / "d"), "--data-root", str(got), "--dataset", "got10k"]
        + ["--split", "test", "--out", str(tmp_path / "sub"), *common]
    )
    assert rc == 0, capsys.readouterr().err
    sub = tmp_path / "sub" / "got10k-test" / "GOT-10k_Test_000001"
    lines = (sub / "GOT-10k_Test_000001_001.txt").read_text().splitlines()
    assert len(lines) == 12 and len(lines[0].split(",")) == 4  # every frame, from the first-frame box
    assert len((sub / "GOT-10k_Test_000001_time.txt").read_text().splitlines()) == 12
    capsys.readouterr()
    rc = main(
        ["evaluate", "--model", str(tmp_path / "d"), "--data-root", str(lasot), "--dataset", "lasot", *common]
    )
    assert rc == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= rec["auc"] <= 1.0 and rec["params"] > 0
    rc = main(
        [
            "evaluate",
            "--model",
            str(tmp_path / "d"),
            "--data-root",
            str(got),
            "--dataset",
            "got10k",
            "--split",
            "test",
        ]
    )
    assert rc == 2 and "needs --out" in capsys.readouterr().err


_RSS_SCRIPT = r"""
import resource, sys
import numpy as np, torch
torch.set_num_threads(1)
from tracker_prune.data import PairDataset, crop_resize, frame_tensor, load_got10k
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seqs = load_got10k(sys.argv[1], "train")
frames = sum(len(s) for s in seqs)
for s in seqs:  # every frame of every sequence decoded and cropped (a full pass over the split)
    for i in range(len(s)):
        crop_resize(frame_tensor(s.frame(i)), s.boxes[i], 4.0, 64)
ds = PairDataset(seqs, length=64)
for k in range(len(ds)):
    ds[k]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(frames, (peak - base) / 1024)
"""


@pytest.mark.slow
def test_peak_rss_stays_bounded_over_a_full_size_sequence_set(tmp_path):
    """6 sequences x 60 frames at 640x360: decoded eagerly as float32 that is 949 MiB (the old loader);
    decoding on access keeps the growth of the peak RSS far below that."""
    root = vf.make_got10k(tmp_path, n_train=6, n_val=0, n_test=0, frames=60, seed=5)
    res = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(root)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    frames, grew_mib = res.stdout.split()
    eager_mib = int(frames) * 360 * 640 * 3 * 4 / 2**20
    assert int(frames) == 360 and eager_mib > 900
    assert float(grew_mib) < 150, f"peak RSS grew {grew_mib} MiB over {frames} frames"


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224"])
def test_slimmed_timm_model_saved_and_rebuilt(tmp_path, name):
    import warnings

    import timm

    from tracker_prune import Pruner
    from tracker_prune.io import load_timm, save_timm

    torch.manual_seed(0)
    if name == "resnet18":
        kwargs = dict(num_classes=5, channels=(8, 16, 24, 32), stem_width=8)
        m = timm.create_model(name, pretrained=False, **kwargs)
    else:
        kwargs = dict(img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=4, num_classes=5)
        m = timm.create_model(name, pretrained=False, **kwargs)
    m.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = Pruner(m, "random", seed=1)
    p.apply(p.masks(0.3), fold_scales=True)
    small = save_timm(m, tmp_path / "slim.pt", **kwargs)
    back = load_timm(tmp_path / "slim.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back(x), small(x), atol=1e-6) and torch.allclose(back(x), m(x), atol=1e-4)
    assert sum(t.numel() for t in back.parameters()) == sum(t.numel() for t in small.parameters())
    assert sum(t.numel() for t in back.parameters()) < sum(
        t.numel() for t in timm.create_model(name, **kwargs).parameters()
    )
    from tracker_prune.io import CheckpointError, save

    with pytest.raises(CheckpointError, match="tracker-prune/tracker"):
        from tracker_prune.io import load

        load(tmp_path / "slim.pt")  # a timm checkpoint is not a tracker checkpoint
    del save
