"""The small test splits shipped in datasets/ load offline and are checked against their sums."""

import gzip
import multiprocessing
import shutil
import threading
from pathlib import Path

import pytest

from zoo.data import DatasetNotFoundError, classification
from zoo.data import bccd as bccd_module
from zoo.data.classification import verify_shipped

from .conftest import REPO, serve_directory


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


def _stage_after(barrier, src: str) -> None:
    barrier.wait()
    classification._stage(classification._IDX["fashion_mnist"], "test", src)


def test_runs_started_together_on_a_fresh_cache_all_get_whole_files(monkeypatch, tmp_path):
    """One runner per matrix row, started at once on a machine with an empty cache: each
    decompresses the idx files into the same folder, and none may fail or read half a file."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(REPO / "datasets" / "fashion-mnist" / name, src / name)
    ctx = multiprocessing.get_context("fork")
    for attempt in range(3):
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / f"cache{attempt}"))
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_stage_after, args=(barrier, str(src))) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0] * 6
        raw = tmp_path / f"cache{attempt}" / "torchvision" / "FashionMNIST" / "raw"
        for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            assert (raw / name).read_bytes() == gzip.decompress((src / f"{name}.gz").read_bytes())
        assert sorted(p.name for p in raw.iterdir()) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def test_two_bccd_downloads_at_once_both_end_with_the_whole_folder(monkeypatch, tmp_path):
    """Each download fills its own temporary folder; the second to finish finds the first's in
    place and keeps it (the same pinned commit's files), leaving no partial folder behind."""
    source = tmp_path / "source"
    for split in bccd_module.SPLITS:
        (source / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (source / "ImageSets" / "Main" / f"{split}.txt").write_text("a\nb\n")
    for i in "ab":
        (source / "Annotations").mkdir(exist_ok=True)
        (source / "JPEGImages").mkdir(exist_ok=True)
        (source / "Annotations" / f"{i}.xml").write_text(f"<annotation>{i}</annotation>")
        (source / "JPEGImages" / f"{i}.jpg").write_bytes(i.encode() * 1000)

    dst, errors = tmp_path / "cache" / "BCCD", []

    def download():
        try:
            assert bccd_module._download(dst) == dst
        except BaseException as err:  # noqa: BLE001 (reported by the assertion below)
            errors.append(err)

    with serve_directory(source) as url:
        monkeypatch.setattr(bccd_module, "SOURCE_URL", url)
        threads = [threading.Thread(target=download) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert (dst / "JPEGImages" / "b.jpg").read_bytes() == b"b" * 1000
    assert [p.name for p in dst.parent.iterdir()] == ["BCCD"]


def test_a_failed_bccd_download_leaves_no_partial_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(bccd_module, "SOURCE_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(OSError):
        bccd_module._download(tmp_path / "BCCD")
    assert list(tmp_path.iterdir()) == []
