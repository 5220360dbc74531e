"""Metrics golden values, save/load round trip, data generator, GOT-10k loader, CLI."""

import numpy as np
import pytest
import torch

from tracker_prune import Pruner, set_masks, slim
from tracker_prune.data import make_sequence, sample_pairs, sequences_dataset
from tracker_prune.io import load, save
from tracker_prune.trackers import build_tracker


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
    assert main(["train", "--arch", "vit", "--steps", "2", "--out", str(tmp_path / "d"), *small]) == 0
    assert (tmp_path / "d" / "model.pt").is_file() and (tmp_path / "d" / "result.json").is_file()
    assert (
        main(
            [
                "prune",
                "--model",
                str(tmp_path / "d"),
                "--out",
                str(tmp_path / "p"),
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
    assert main(["slim", "--model", str(tmp_path / "p" / "model.pt"), "--out", str(tmp_path / "s")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert lines[-1]["params_slim"] < lines[-1]["params_masked"]
    assert main(["evaluate", "--model", str(tmp_path / "s"), "--test-sequences", "1", "--test-len", "3"]) == 0
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
    assert main(["train", "--arch", "cnn", "--steps", "1", "--out", str(tmp_path / "d"), *small]) == 0
    args = ["prune", "--model", str(tmp_path / "d"), "--out", str(tmp_path / "p"), "--budget", "0.5"]
    args += ["--method", "chipnet", "--kind", "params", "--group-residual", "--search-steps", "2"]
    assert main(args + ["--finetune-steps", "1", *small]) == 0
    assert main(["slim", "--model", str(tmp_path / "p"), "--out", str(tmp_path / "s")]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert out[-1]["params_slim"] < out[-1]["params_masked"]
    from tracker_prune.io import load

    s = load(tmp_path / "s" / "model.pt")
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
