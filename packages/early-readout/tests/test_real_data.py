"""Issue 23: the CLI on a CelebA fixture in the official layout (train, evaluate), local pretrained
weights, groups from metadata."""

import io
import json

import pytest
import torch

from early_readout.cli import main
from early_readout.models import build_model, load_pretrained, read_state_dict

ATTRS = ["Blond_Hair", "Male", "Smiling"]  # a subset is enough for the loader (names are looked up)


def _celeba_official(root, n=48):
    import numpy as np
    from PIL import Image

    img = root / "img_align_celeba"
    img.mkdir(parents=True)
    blobs = []
    for k in range(4):
        buf = io.BytesIO()
        arr = np.random.default_rng(k).integers(0, 256, size=(218, 178, 3), dtype=np.uint8)
        Image.fromarray(arr).save(buf, format="JPEG")
        blobs.append(buf.getvalue())
    rows, parts = [f"{n}", " ".join(ATTRS) + " "], []
    for i in range(n):
        iid = f"{i + 1:06d}.jpg"
        (img / iid).write_bytes(blobs[i % 4])
        y, a = i % 2, (i // 2) % 2
        rows.append(f"{iid} {2 * y - 1:2d} {2 * a - 1:2d} {-1:2d}")
        parts.append(f"{iid} {(i // 4) % 3}")
    (root / "list_attr_celeba.txt").write_text("\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")


def test_cli_end_to_end_on_a_celeba_fixture_with_pretrained_weights(tmp_path, monkeypatch):
    """train (teacher + distillation) and evaluate on 178x218 JPEGs in the official layout, with
    DataLoader workers, a local safetensors backbone for the student, and groups read from metadata."""
    from safetensors.torch import save_file

    from paperworks_shared.group_data import ImageGroupDataset

    root = tmp_path / "celeba"
    _celeba_official(root)
    torch.manual_seed(3)
    src = build_model("cnn-tiny", (3, 32, 32), 2)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "b.safetensors"))
    seen = {}
    real_load = load_pretrained

    def spy(model, path):
        out = real_load(model, path)
        seen["stem"] = model.state_dict()["stem.0.weight"].clone()
        return out

    monkeypatch.setattr("early_readout.models.load_pretrained", spy)
    decoded = {"n": 0}
    real_get = ImageGroupDataset.__getitem__

    def counting_get(self, i):
        decoded["n"] += 1
        return real_get(self, i)

    monkeypatch.setattr(ImageGroupDataset, "__getitem__", counting_get)
    out = tmp_path / "run"
    argv = [
        "train", "--dataset", "celeba", "--data-root", str(root), "--image-size", "32",
        "--teacher", "cnn-tiny", "--student", "cnn-tiny", "--pretrained", str(tmp_path / "b.safetensors"),
        "--teacher-epochs", "1", "--epochs", "1", "--batch-size", "8", "--workers", "0",
        "--device", "cpu", "--threads", "1", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    assert torch.equal(seen["stem"], src.state_dict()["stem.0.weight"])
    res = json.loads((out / "metrics.json").read_text())
    n_train = sum(1 for i in range(48) if (i // 4) % 3 == 0)
    assert res["train_group_counts"] == [4, 4, 4, 4] and sum(res["train_group_counts"]) == n_train
    assert 0.0 <= res["test_worst_group_acc"] <= res["test_avg"] <= 1.0
    # decoding happens only in passes over the data (teacher 1 epoch, logits, 1 epoch + readout, val,
    # test), never to count groups: an upper bound from the split sizes
    assert decoded["n"] <= 7 * n_train + 2 * 16 * 2


def test_read_state_dict_formats(tmp_path):
    from safetensors.torch import save_file

    m = build_model("cnn-tiny", (3, 16, 16), 2)
    sd = m.state_dict()
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "w.pth.tar")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for f in ("w.pth.tar", "w.safetensors"):
        got = read_state_dict(tmp_path / f)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth: not a readable torch weights file"):
        read_state_dict(tmp_path / "junk.pth")


def test_pretrained_of_another_architecture_is_refused_and_head_is_skipped(tmp_path):
    torch.manual_seed(0)
    imagenet_like = build_model("cnn-tiny", (3, 16, 16), 1000)  # same backbone, 1000-class head
    torch.save(imagenet_like.state_dict(), tmp_path / "in1k.pth")
    m = build_model("cnn-tiny", (3, 16, 16), 2, pretrained=tmp_path / "in1k.pth")
    assert torch.equal(m.state_dict()["layer1.0.weight"], imagenet_like.state_dict()["layer1.0.weight"])
    assert m.fc.weight.shape == (2, 16)
    torch.save(build_model("mlp-tiny", (3, 16, 16), 2).state_dict(), tmp_path / "mlp.pth")
    with pytest.raises(ValueError, match=r"mlp.pth: matches 0 of the model's"):
        build_model("cnn-tiny", (3, 16, 16), 2, pretrained=tmp_path / "mlp.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_model("cnn-tiny", (3, 16, 16), 2, pretrained=tmp_path / "nope.pth")
