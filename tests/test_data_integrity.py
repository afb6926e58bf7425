"""CamVid and BCCD files are checked against the SHA256 lists shipped with zoo, at first use;
the verdict is cached, and a changed file is caught again."""

from __future__ import annotations

import shutil

import pytest
import torch
from torchvision.io import encode_png

from zoo.data import bccd, camvid, integrity
from zoo.data.registry import DataFileError

from .conftest import REPO


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def flip_byte(path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_lists_name_every_file_of_the_pinned_sources():
    """CamVid: 3 list files and 701 image/mask pairs; BCCD: 4 split lists and 364 images with
    their annotations. The test split shipped in datasets/ agrees with the list."""
    _, sums = integrity.expected_sums("camvid")
    assert len(sums) == 3 + 2 * (367 + 101 + 233)
    assert sum(n.startswith("trainannot/") for n in sums) == 367
    _, sums = integrity.expected_sums("bccd")
    assert len(sums) == 4 + 2 * 364
    shipped = (REPO / "datasets" / "bccd" / "SHA256SUMS").read_text().split("\n")
    pairs = [line.split() for line in shipped if line]
    assert len(pairs) == 1 + 2 * 72
    assert all(sums[name.removeprefix("BCCD/")] == digest for digest, name in pairs)


def shipped_bccd_copy(tmp_path):
    """The repository's BCCD test split, copied; the other split lists empty (unused by test)."""
    root = tmp_path / "data" / "bccd" / "BCCD"
    shutil.copytree(REPO / "datasets" / "bccd" / "BCCD", root)
    for split in ("train", "val", "trainval"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("")
    return root


def test_a_flipped_byte_in_bccd_is_caught_even_after_a_cached_verdict(tmp_path, cache):
    root = shipped_bccd_copy(tmp_path)
    assert len(bccd.BCCDDataset("test", str(tmp_path / "data"), download=False)) == 72
    assert len(list((cache / "verified").glob("bccd-*.json"))) == 1  # the verdict, cached
    image = root / "JPEGImages" / "BloodImage_00007.jpg"
    original = image.read_bytes()
    flip_byte(image)
    with pytest.raises(DataFileError) as err:
        bccd.BCCDDataset("test", str(tmp_path / "data"), download=False)
    message = str(err.value)
    assert message.startswith(f"{image}: sha256 ") and "differs from the one zoo lists for bccd" in message
    assert "Restore it from BCCD_Dataset at commit d272fb14" in message
    image.write_bytes(original)
    (root / "Annotations" / "BloodImage_00011.xml").unlink()
    with pytest.raises(DataFileError, match="BloodImage_00011.xml is missing from bccd in "):
        bccd.BCCDDataset("test", str(tmp_path / "data"), download=False)


def test_a_checked_split_is_not_hashed_again(tmp_path, cache, monkeypatch):
    shipped_bccd_copy(tmp_path)
    hashed = []
    real = integrity.file_sha256
    monkeypatch.setattr(integrity, "file_sha256", lambda path: hashed.append(path) or real(path))
    bccd.BCCDDataset("test", str(tmp_path / "data"), download=False)
    assert len(hashed) == 1 + 2 * 72
    hashed.clear()
    bccd.BCCDDataset("test", str(tmp_path / "data"), download=False)
    assert hashed == []


def fake_camvid(root):
    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        torch.manual_seed(len(split))
        image, mask = torch.randint(0, 256, (3, 6, 8), dtype=torch.uint8), torch.randint(0, 12, (1, 6, 8))
        (root / split / "a.png").write_bytes(encode_png(image).numpy().tobytes())
        (root / f"{split}annot" / "a.png").write_bytes(encode_png(mask.to(torch.uint8)).numpy().tobytes())
        line = f"{camvid.LIST_PREFIX}{split}/a.png {camvid.LIST_PREFIX}{split}annot/a.png\n"
        (root / f"{split}.txt").write_text(line)


def test_a_flipped_byte_in_camvid_names_the_file_and_what_to_do(tmp_path, cache, trust_files):
    root = tmp_path / "data" / "camvid"
    fake_camvid(root)
    trust_files("camvid", root)
    assert len(camvid.CamVid("trainval", str(tmp_path / "data"))) == 2
    flip_byte(root / "valannot" / "a.png", at=40)
    with pytest.raises(DataFileError) as err:
        camvid.CamVid("trainval", str(tmp_path / "data"))
    assert str(err.value).startswith(f"{root / 'valannot' / 'a.png'}: sha256 ")
    assert "python -m zoo.data.camvid --download DIR" in str(err.value)
    assert len(camvid.CamVid("test", str(tmp_path / "data"))) == 1  # the other splits still load
    (root / "test.txt").write_text("/SegNet/CamVid/test/b.png /SegNet/CamVid/testannot/b.png\n")
    with pytest.raises(DataFileError, match=f"{root / 'test.txt'}: sha256 "):  # before it is read
        camvid.CamVid("test", str(tmp_path / "data"))
