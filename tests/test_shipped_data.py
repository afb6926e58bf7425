"""The small test splits shipped in datasets/ load offline and are checked against their sums."""

import shutil
from pathlib import Path

import pytest

from zoo.data import DatasetNotFoundError, classification
from zoo.data import bccd as bccd_module
from zoo.data.classification import verify_shipped

from .conftest import REPO


def test_fashion_mnist_test_split_is_shipped_and_verified(monkeypatch, tmp_path):
    spec = classification._IDX["fashion_mnist"]
    monkeypatch.setitem(classification._IDX, "fashion_mnist", type(spec)(**{**vars(spec), "system_dirs": ()}))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    data = classification.load_classification("fashion_mnist", "test")
    assert data.images.shape == (10000, 1, 28, 28) and data.labels.bincount().tolist() == [1000] * 10


def test_bccd_test_split_is_shipped(monkeypatch, tmp_path):
    monkeypatch.setattr(bccd_module, "_candidate_dirs", lambda data_dir: [tmp_path])
    root = bccd_module.find_root(download=False, split="test")
    assert root == bccd_module.SHIPPED
    assert len(bccd_module.BCCDDataset("test", download=False)) == 72
    with pytest.raises(DatasetNotFoundError, match="BCCD not found"):
        bccd_module.find_root(download=False, split="train")


def test_a_corrupt_shipped_file_is_refused(tmp_path):
    copy = tmp_path / "bccd"
    shutil.copytree(REPO / "datasets" / "bccd", copy)
    victim = next(Path(copy, "BCCD", "JPEGImages").iterdir())
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(DatasetNotFoundError, match="does not match SHA256SUMS"):
        verify_shipped(copy)
