"""Metrics golden values, save/load round trip, data generator, GOT-10k loader, CLI."""

import numpy as np
import pytest
import torch

from tracker_prune import Pruner, set_masks, slim
from tracker_prune.data import load_got10k, make_sequence, sample_pairs, sequences_dataset
from tracker_prune.io import load, save
from tracker_prune.metrics import iou, success_curve, tracking_metrics
from tracker_prune.trackers import build_tracker


def test_perfect_tracker_auc_is_20_over_21():
    gt = [np.array([[10, 10, 20, 20]] * 5, float)]
    m = tracking_metrics(gt, gt)
    assert m["auc"] == pytest.approx(20 / 21)
    assert m["precision"] == 1.0 and m["ao"] == pytest.approx(1.0) and m["sr75"] == 1.0


def test_constant_offset_box_known_curve():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 10, 10]], float)  # overlap 50, union 150 -> IoU 1/3
    assert iou(a, b)[0] == pytest.approx(1 / 3)
    curve = success_curve(np.array([1 / 3]))
    # got10k _calc_curves: ious[:, None] > thr[None, :]
    expected = (np.array([1 / 3])[:, None] > np.linspace(0, 1, 21)[None, :]).mean(0)
    assert np.array_equal(curve, expected)
    assert curve.sum() == 7  # thresholds 0, .05, ..., .30 are below 1/3


def test_bad_metric_input():
    with pytest.raises(ValueError):
        tracking_metrics([], [])


@pytest.mark.parametrize("arch", ["cnn", "vit"])
def test_save_load_roundtrip_slim(tmp_path, arch):
    torch.manual_seed(0)
    m = build_tracker(arch).eval()
    p = Pruner(m, "random")
    set_masks(m, p.masks(0.3))
    s = slim(m).eval()
    save(s, tmp_path / "s.pt")
    s2 = load(tmp_path / "s.pt")
    z, x = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    assert torch.equal(s(z, x)["box"], s2(z, x)["box"])
    save(m, tmp_path / "m.pt")  # gated (masked) model round trip
    assert torch.equal(m(z, x)["box"], load(tmp_path / "m.pt")(z, x)["box"])


def test_sequence_generator_boxes_and_dataset():
    frames, boxes = make_sequence(3, length=8)
    assert frames.shape == (8, 96, 96, 3) and boxes.shape == (8, 4)
    assert (boxes[:, 2:] >= 1).all() and (boxes[:, :2] >= 0).all()
    assert not np.allclose(boxes[0], boxes[-1])  # it moves
    z, x, t = sample_pairs(np.random.default_rng(0), 4, pool=[(frames, boxes)])
    assert z.shape == (4, 3, 32, 32) and x.shape == (4, 3, 64, 64) and t.shape == (4, 4)
    ds = sequences_dataset(2, length=5)
    assert len(ds) == 2 and ds[0]["frames"].shape == (5, 96, 96, 3)


def test_got10k_loader_on_tiny_folder(tmp_path):
    from PIL import Image

    seq = tmp_path / "train" / "GOT-10k_Train_000001"
    seq.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(seq / f"{i + 1:08d}.jpg")
    (seq / "groundtruth.txt").write_text("1,2,3,4\n2,3,4,5\n3,4,5,6\n")
    (tmp_path / "train" / "list.txt").write_text("GOT-10k_Train_000001\n")
    out = load_got10k(tmp_path, "train")
    assert len(out) == 1
    frames, boxes = out[0]
    assert frames.shape == (3, 20, 30, 3) and boxes.tolist()[1] == [2, 3, 4, 5]
    with pytest.raises(FileNotFoundError):
        load_got10k(tmp_path, "val")


def test_cli_help_and_bad_budget(capsys):
    from tracker_prune.cli import main

    assert main(["--help"]) == 0
    assert "prune" in capsys.readouterr().out
    assert main(["prune", "--model", "x.pt", "--out", "y.pt", "--budget", "1.5"]) == 2
    assert "--budget" in capsys.readouterr().err


def test_cli_train_prune_slim_evaluate(tmp_path, capsys):
    import json

    from tracker_prune.cli import main

    small = ["--pool", "2", "--batch", "4", "--test-sequences", "1", "--test-len", "3"]
    assert main(["train", "--arch", "vit", "--steps", "2", "--out", str(tmp_path / "d.pt"), *small]) == 0
    assert (
        main(
            [
                "prune",
                "--model",
                str(tmp_path / "d.pt"),
                "--out",
                str(tmp_path / "p.pt"),
                "--budget",
                "0.25",
                "--search-steps",
                "1",
                "--finetune-steps",
                "1",
                *small,
            ]
        )
        == 0
    )
    assert main(["slim", "--model", str(tmp_path / "p.pt"), "--out", str(tmp_path / "s.pt")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert lines[-1]["params_slim"] < lines[-1]["params_masked"]
    assert main(["evaluate", "--model", str(tmp_path / "s.pt"), *small]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["auc"] <= 1.0


def test_torch_pruning_peer_matches_params_and_keeps_residual():
    from tracker_prune.cost import count_params
    from tracker_prune.peer import tp_prune_to_params

    torch.manual_seed(0)
    m = build_tracker("cnn").eval()
    x = (torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64))
    target = 15000
    peer = tp_prune_to_params(m, target, x, iters=6)
    assert count_params(peer) <= target
    assert peer.backbone[1].conv2.out_channels == m.backbone[1].conv2.out_channels  # residual untouched
    assert peer.backbone[1].conv1.out_channels < m.backbone[1].conv1.out_channels
    assert peer(*x)["box"].shape == (1, 256, 4)


def test_cli_chipnet_with_grouped_residual(tmp_path, capsys):
    import json

    from tracker_prune.cli import main

    small = ["--pool", "2", "--batch", "4", "--test-sequences", "1", "--test-len", "3"]
    assert main(["train", "--arch", "cnn", "--steps", "1", "--out", str(tmp_path / "d.pt"), *small]) == 0
    args = ["prune", "--model", str(tmp_path / "d.pt"), "--out", str(tmp_path / "p.pt"), "--budget", "0.5"]
    args += ["--method", "chipnet", "--kind", "params", "--group-residual", "--search-steps", "2"]
    assert main(args + ["--finetune-steps", "1", *small]) == 0
    assert main(["slim", "--model", str(tmp_path / "p.pt"), "--out", str(tmp_path / "s.pt")]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert out[-1]["params_slim"] < out[-1]["params_masked"]
    from tracker_prune.io import load

    s = load(tmp_path / "s.pt")
    assert s.backbone[0][0].out_channels == s.residual_widths["stage0"] == 8  # 16 - int(0.5 * 16)


def test_torch_pruning_vit_peer_prunes_only_head_dims_and_mlp():
    from tracker_prune.cost import count_params
    from tracker_prune.peer import tp_prune_to_params
    from tracker_prune.trackers import build_tracker

    torch.manual_seed(0)
    m = build_tracker("vit").eval()
    x = (torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64))
    target = count_params(m) // 2
    peer = tp_prune_to_params(m, target, x)
    assert count_params(peer) <= target
    assert peer.norm.normalized_shape == m.norm.normalized_shape  # embed dim untouched
    for a, b in zip(m.blocks, peer.blocks):
        assert b.attn.num_heads == a.attn.num_heads and b.attn.head_dim < a.attn.head_dim
        assert b.attn.proj.out_features == a.attn.proj.out_features
        assert b.mlp.fc1.out_features < a.mlp.fc1.out_features
    assert peer(*x)["box"].shape == m(*x)["box"].shape
