"""Issue 20 (one CLI style, shared pieces) and issue 23 (real-layout data, pretrained backbones, workers)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from feature_sieve.cli import main

# ---------------------------------------------------------------- fixtures in the real layouts


def _jpeg(path, w, h, seed, gray=False):
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w) if gray else (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "L" if gray else "RGB").save(path, quality=85)


@pytest.fixture(scope="module")
def waterbirds_root(tmp_path_factory):
    """Waterbirds as released by group_DRO: metadata.csv (img_id,img_filename,y,split,place,place_filename)
    and CUB-style class folders of JPEGs of varied sizes, one of them grayscale (CUB has a few)."""
    root = tmp_path_factory.mktemp("waterbirds_complete95_forest2water2")
    rows = []
    sizes = [(500, 375), (333, 500), (500, 332), (427, 500)]
    i = 0
    for split, n_per_group in ((0, 4), (1, 2), (2, 2)):
        for y in (0, 1):
            for place in (0, 1):
                for _ in range(n_per_group):
                    cls = "001.Black_footed_Albatross" if y else "036.Northern_Flicker"
                    rel = f"{cls}/{cls.split('.')[1]}_{i:04d}_{100 + i}.jpg"
                    w, h = sizes[i % len(sizes)]
                    _jpeg(root / rel, w, h, i, gray=(i == 3))
                    rows.append(
                        {
                            "img_id": i + 1,
                            "img_filename": rel,
                            "y": y,
                            "split": split,
                            "place": place,
                            "place_filename": f"/b/bamboo_forest/00000{i}.jpg",
                        }
                    )
                    i += 1
    with open(root / "metadata.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    return root


# ---------------------------------------------------------------- 20.4: one CLI style


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom feature_sieve.cli import _parser\n"
        "try:\n    _parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("cmd", ["train", "evaluate", "smoke"])
def test_runtime_options_on_every_command_that_trains_or_evaluates(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    text = capsys.readouterr().out
    for opt in ("--device", "--threads", "--no-progress"):
        assert opt in text
    if cmd != "smoke":
        assert "--data-root" in text and "--workers" in text


def test_bench_subcommand_exists(capsys):
    assert main(["bench", "--help"]) == 0
    assert "feature-sieve" in capsys.readouterr().out


def test_threads_are_not_capped_at_two(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["smoke", "--steps", "2", "--methods", "erm", "--threads", "3"]) == 0
        assert torch.get_num_threads() == 3  # the old CLI capped this at 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda_is_one_line(tmp_path, capsys):
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_resume_refuses_a_checkpoint_written_with_other_settings(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--method", "erm", "--steps", "4", "--batch-size", "32", "--width", "4"]
    assert main([*base, "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    # same settings, more steps: resumes (steps is not part of the configuration)
    assert main([*base[:-4], "--steps", "6", *base[-4:], "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main([*base, "--lr", "0.2", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "other settings (lr)" in err and "--no-resume" in err
    assert main([*base, "--lr", "0.2", "--out", str(out), "--no-progress", "--no-resume"]) == 0


# ---------------------------------------------------------------- 20.7: shared pieces


def test_group_dro_is_the_shared_loss():
    from feature_sieve import GroupDRO, SmallCNN
    from paperworks_shared.dro import GroupDROLoss

    m = GroupDRO(SmallCNN(1, 2, 4), 2, n_groups=4, eta=0.1)
    assert isinstance(m.dro, GroupDROLoss) and m.q is m.dro.q
    with pytest.raises(ValueError, match=r"group ids must be in \[0, 4\)"):
        m.training_step(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), 0, group=torch.tensor([0, 7]))


def test_fit_checkpoint_is_the_shared_format(color_digits, tmp_path):
    from feature_sieve import ERM, SmallCNN, fit
    from feature_sieve.train import CheckpointError, load_checkpoint
    from paperworks_shared.checkpoint import load_checkpoint as shared_load

    fit(ERM(SmallCNN(2, 2, 4), 2), color_digits["train"], 3, batch_size=16, selector="last",
        checkpoint_dir=tmp_path, progress=False)  # fmt: skip
    state, meta = shared_load(tmp_path / "checkpoint.pt", kind="feature-sieve-fit")
    assert state["step"] == 2 and meta["method"] == "erm"
    (tmp_path / "checkpoint.pt").write_bytes(b"junk")  # a few junk bytes: CheckpointError, not struct.error
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        load_checkpoint(tmp_path / "checkpoint.pt")


# ---------------------------------------------------------------- 23: data, workers, pretrained


def test_group_counts_read_metadata_without_decoding(waterbirds_root, monkeypatch):
    from feature_sieve.data import load_dataset
    from feature_sieve.train import group_counts
    from paperworks_shared.group_data import ImageGroupDataset

    data = load_dataset("waterbirds", root=str(waterbirds_root), image_size=32)

    def no_decode(self, i):
        raise AssertionError("group_counts decoded an image")

    monkeypatch.setattr(ImageGroupDataset, "__getitem__", no_decode)
    assert group_counts(data["train"], 4).tolist() == [4, 4, 4, 4]
    assert group_counts(data["test"], 4).tolist() == [2, 2, 2, 2]


def test_dataloader_workers_give_the_same_batches(waterbirds_root):
    from feature_sieve.data import load_dataset
    from feature_sieve.train import predict

    data = load_dataset("waterbirds", root=str(waterbirds_root), image_size=24)["train"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 24 * 24, 2))
    a = predict(model, data, batch_size=5, num_workers=0)
    b = predict(model, data, batch_size=5, num_workers=2)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert a[3].tolist() == list(range(len(data)))


@pytest.mark.parametrize("fmt", ["safetensors", "timm_pth", "torchvision_wrapped"])
def test_pretrained_backbone_from_a_local_file(tmp_path, fmt):
    import timm

    from feature_sieve.models import build_model

    torch.manual_seed(1)
    src = timm.create_model("resnet18", pretrained=False, num_classes=1000)  # an ImageNet-shaped checkpoint
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "resnet18.safetensors"
        save_file(sd, str(path))
    elif fmt == "timm_pth":
        path = tmp_path / "resnet18.pth"
        torch.save(sd, path)
    else:  # a training script's wrapper with a DataParallel prefix
        path = tmp_path / "checkpoint.pth.tar"
        torch.save({"epoch": 90, "state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    torch.manual_seed(2)
    model = build_model("resnet18", 3, 2, (64, 64), pretrained=path)
    got = model.state_dict()
    assert torch.equal(got["conv1.weight"], sd["conv1.weight"])
    assert torch.equal(got["layer4.1.bn2.running_var"], sd["layer4.1.bn2.running_var"])
    assert got["fc.weight"].shape == (2, 512)  # the 1000-class head is re-initialised, not loaded
    assert not torch.equal(got["fc.weight"], sd["fc.weight"][:2])


def test_pretrained_that_does_not_fit_names_the_problem(tmp_path):
    from feature_sieve.models import PretrainedError, build_model

    path = tmp_path / "small.pt"
    torch.save(build_model("small_cnn", 1, 2, (8, 8), width=4).state_dict(), path)
    with pytest.raises(
        PretrainedError, match=r"small.pt: does not fit SmallCNN: shape mismatch: conv1.weight"
    ):
        build_model("small_cnn", 1, 2, (8, 8), width=8, pretrained=path)
    partial = {"conv1.weight": torch.zeros(4, 1, 3, 3)}
    torch.save(partial, path)
    with pytest.raises(PretrainedError, match=r"missing 3 key\(s\), e.g. conv1.bias"):
        build_model("small_cnn", 1, 2, (8, 8), width=4, pretrained=path)


def test_cli_end_to_end_on_a_real_layout_fixture(waterbirds_root, tmp_path, capsys):
    """train (with a pretrained init from a local file and a DataLoader worker) then evaluate."""
    from feature_sieve.models import build_model

    init = tmp_path / "init.pt"
    torch.manual_seed(3)
    torch.save(build_model("small_cnn", 3, 2, (32, 32), width=4).state_dict(), init)
    out = tmp_path / "wb"
    argv = ["train", "--dataset", "waterbirds", "--data-root", str(waterbirds_root), "--image-size", "32",
            "--width", "4", "--method", "sieve", "--steps", "3", "--batch-size", "8", "--device", "cpu",
            "--threads", "1", "--workers", "1", "--pretrained", str(init), "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["train_group_counts"] == [4, 4, 4, 4]
    assert set(m["test"]) >= {"worst_group_acc", "avg_acc", "per_group"}
    capsys.readouterr()
    assert main(["evaluate", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert f"worst_group_acc {m['test']['worst_group_acc']:.3f}" in capsys.readouterr().out


def test_group_counts_refuse_ids_outside_the_group_range():
    from feature_sieve.train import group_counts

    ds = torch.utils.data.TensorDataset(
        torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), torch.tensor([0, 3, 5]), torch.arange(3)
    )
    with pytest.raises(ValueError, match=r"group ids must be in \[0, 4\), got values in \[0, 5\]"):
        group_counts(ds, 4)  # the old code silently dropped group 5 from the counts
    assert group_counts(ds, 6).tolist() == [1, 0, 0, 1, 0, 1]
