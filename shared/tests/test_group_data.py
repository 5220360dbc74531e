"""Waterbirds / CelebA loaders against fixtures generated in the real layouts (issue 23).

CelebA: the official release (``list_attr_celeba.txt`` with its count and names header lines, -1/1
values separated by runs of spaces, ``list_eval_partition.txt``) and the Kaggle CSV layout (including
the zip's nested ``img_align_celeba/img_align_celeba/``), 178 x 218 JPEGs. Waterbirds: the group_DRO
``metadata.csv`` with species folders and JPEGs of varying sizes. Groups come from the metadata, never
from decoding images; a full pass decodes one image per access with bounded memory.
"""

import io
import subprocess
import sys
import textwrap

import pytest
import torch

from paperworks_shared.group_data import (
    ImageGroupDataset,
    celeba_layout,
    group_counts,
    load_celeba,
    load_waterbirds,
)

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
    "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
    "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
    "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
BLOND, MALE = CELEBA_ATTRS.index("Blond_Hair"), CELEBA_ATTRS.index("Male")


def _jpeg_bytes(w: int, h: int, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_celeba(root, n: int, layout: str = "official", nested: bool = False, distinct: int = 4):
    """CelebA of ``n`` 178x218 JPEGs in the given layout; returns the expected (label, spurious, split)."""
    g = torch.Generator().manual_seed(0)
    vals = torch.where(torch.rand(n, 40, generator=g) < 0.5, -1, 1)
    split = torch.randint(0, 3, (n,), generator=g)
    split[:3] = torch.tensor([0, 1, 2])  # every split non-empty
    img_dir = root / "img_align_celeba"
    if nested:
        img_dir = img_dir / "img_align_celeba"
    img_dir.mkdir(parents=True)
    blobs = [_jpeg_bytes(178, 218, k) for k in range(distinct)]
    ids = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, iid in enumerate(ids):
        (img_dir / iid).write_bytes(blobs[i % distinct])
    if layout == "official":
        lines = [f"{n}", " ".join(CELEBA_ATTRS) + " "]  # the release's names line ends with a space
        lines += [f"{iid} " + " ".join(f"{int(v):2d}" for v in vals[i]) for i, iid in enumerate(ids)]
        (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        (root / "list_eval_partition.txt").write_text(
            "".join(f"{iid} {int(split[i])}\n" for i, iid in enumerate(ids))
        )
    else:
        lines = ["image_id," + ",".join(CELEBA_ATTRS)]
        lines += [iid + "," + ",".join(str(int(v)) for v in vals[i]) for i, iid in enumerate(ids)]
        (root / "list_attr_celeba.csv").write_text("\n".join(lines) + "\n")
        (root / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + "".join(f"{iid},{int(split[i])}\n" for i, iid in enumerate(ids))
        )
    label = (vals[:, BLOND] > 0).long()
    spurious = (vals[:, MALE] > 0).long()
    return label, spurious, split


def _expected(label, spurious, split, sid):
    m = split == sid
    return label[m].tolist(), spurious[m].tolist(), (2 * label[m] + spurious[m]).tolist()


@pytest.mark.parametrize("layout,nested", [("official", False), ("kaggle", False), ("kaggle", True)])
def test_celeba_layouts_give_the_metadata_labels(tmp_path, layout, nested):
    label, spurious, split = make_celeba(tmp_path, 40, layout, nested)
    assert celeba_layout(tmp_path) == layout
    dd = load_celeba(tmp_path)
    for sid, name in enumerate(("train", "validation", "test")):
        y, a, grp = _expected(label, spurious, split, sid)
        assert dd[name]["label"] == y and dd[name]["spurious"] == a and dd[name]["group"] == grp
        assert dd[name]["index"] == list(range(len(y)))
    x, yy, gg, ii = ImageGroupDataset(dd["train"], size=64)[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert (int(yy), int(gg), int(ii)) == (dd["train"]["label"][0], dd["train"]["group"][0], 0)
    img = dd["train"][0]["image"]
    assert img.size == (178, 218)  # decoded at the release's size


def test_celeba_official_and_kaggle_agree(tmp_path):
    make_celeba(tmp_path / "o", 30, "official")
    make_celeba(tmp_path / "k", 30, "kaggle")
    a, b = load_celeba(tmp_path / "o", target="Smiling"), load_celeba(tmp_path / "k", target="Smiling")
    for s in ("train", "validation", "test"):
        assert a[s]["group"] == b[s]["group"] and a[s]["label"] == b[s]["label"]


def test_celeba_official_quirks_and_errors(tmp_path):
    make_celeba(tmp_path, 12, "official")
    attr = tmp_path / "list_attr_celeba.txt"
    text = attr.read_text().splitlines()
    attr.write_text("\n".join(["13", *text[1:]]) + "\n")  # count line disagrees with the rows
    with pytest.raises(ValueError, match="header says 13 images, the file lists 12"):
        load_celeba(tmp_path)
    bad = list(text)
    bad[5] = bad[5].rsplit(" ", 3)[0]  # a row with missing values
    attr.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt:6: 3[0-9] values for 40 attributes"):
        load_celeba(tmp_path)
    attr.write_text("\n".join(text[1:]) + "\n")  # no count line
    with pytest.raises(ValueError, match="official header"):
        load_celeba(tmp_path)
    attr.write_text("\n".join(text) + "\n")
    with pytest.raises(KeyError, match="Wavy_Hairs"):
        load_celeba(tmp_path, target="Wavy_Hairs")
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt"):
        load_celeba(tmp_path)
    attr.unlink()
    with pytest.raises(FileNotFoundError, match=r"list_attr_celeba.txt.*list_attr_celeba.csv"):
        load_celeba(tmp_path)


def test_celeba_missing_image_is_named(tmp_path):
    make_celeba(tmp_path, 8, "official")
    (tmp_path / "img_align_celeba" / "000005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000005.jpg"):
        load_celeba(tmp_path)


def make_waterbirds(root, n: int = 16):
    rows = ["img_id,img_filename,y,split,place,place_filename"]
    expected = []
    for k in range(n):
        y, place, split = k % 2, (k // 2) % 2, (k // 4) % 3
        species = "014.Indigo_Bunting" if y == 0 else "001.Black_footed_Albatross"
        rel = f"{species}/{species.split('.')[1]}_{k:04d}_{1000 + k}.jpg"
        (root / species).mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_jpeg_bytes(300 + 7 * k, 220 + 5 * k, k))  # sizes vary, as in the release
        rows.append(f"{k + 1},{rel},{y},{split},{place},/b/bamboo_forest/00000{k}.jpg")
        expected.append((y, place, split))
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return expected


def test_waterbirds_real_layout(tmp_path):
    expected = make_waterbirds(tmp_path)
    dd = load_waterbirds(tmp_path)
    for sid, name in enumerate(("train", "validation", "test")):
        want = [2 * y + p for y, p, s in expected if s == sid]
        assert dd[name]["group"] == want
    ds = ImageGroupDataset(dd["train"], size=48)
    assert all(ds[i][0].shape == (3, 48, 48) for i in range(len(ds)))


def test_groups_are_read_without_decoding_images(tmp_path, monkeypatch):
    import PIL.Image

    make_celeba(tmp_path, 24, "official")
    dd = load_celeba(tmp_path)

    def boom(*a, **k):
        raise AssertionError("an image was decoded to read group ids")

    monkeypatch.setattr(PIL.Image, "open", boom)
    ds = ImageGroupDataset(dd["train"], size=32)
    want = torch.bincount(torch.tensor(dd["train"]["group"]), minlength=4)
    assert torch.equal(group_counts(ds, 4), want) and torch.equal(group_counts(dd["train"], 4), want)
    assert ds.groups.tolist() == dd["train"]["group"] and ds.labels.tolist() == dd["train"]["label"]
    with pytest.raises(ValueError, match=r"group ids must be in \[0, 2\)"):
        group_counts(ds, 2)


def test_dataloader_workers_decode_the_same_batches(tmp_path):
    make_celeba(tmp_path, 20, "official", distinct=5)
    ds = ImageGroupDataset(load_celeba(tmp_path)["train"], size=40)
    a = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0))
    b = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2))
    assert len(a) == len(b)
    for u, v in zip(a, b):
        for s, t in zip(u, v):
            assert torch.equal(s, t)


@pytest.mark.slow
def test_full_pass_memory_is_bounded(tmp_path):
    """A pass over a generated split of 2,000 full-size (178x218) CelebA JPEGs at 224 px: peak RSS grows
    by far less than the eagerly decoded split would take (2,000 x 3 x 224 x 224 float32 = 1.2 GB)."""
    make_celeba(tmp_path, 2000, "official", distinct=16)
    code = textwrap.dedent(
        f"""
        import resource, torch
        from paperworks_shared.group_data import ImageGroupDataset, load_celeba
        dd = load_celeba({str(tmp_path)!r})
        ds = ImageGroupDataset(dd["train"], size=224)
        def rss_mb():
            return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20
        base = rss_mb()
        n = 0
        peak = base
        for x, y, g, i in torch.utils.data.DataLoader(ds, batch_size=32, num_workers=0):
            n += len(y)
            peak = max(peak, rss_mb())
        print(n, base, peak)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    n, base, peak = res.stdout.split()
    eager_mb = int(n) * 3 * 224 * 224 * 4 / 2**20
    assert int(n) > 500
    assert float(peak) - float(base) < min(200.0, eager_mb / 3), (n, base, peak, eager_mb)
