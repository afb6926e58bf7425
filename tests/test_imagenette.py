"""The Imagenette loader on a tiny folder the test writes: layout, greyscale, errors that name
the file, the decoded cache (used, and rebuilt when a file changes)."""

import pytest
import torch

from tests.conftest import DATA_DIR, jpeg_bytes, write_tiny_imagenette
from zoo.data import DataFileError, DatasetNotFoundError, dataset_info, imagenette

WNIDS = imagenette.WNIDS


def _jpeg(colour, mode="RGB", size=(128, 128)) -> bytes:
    return jpeg_bytes(colour, mode, size)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """DIR/imagenette with 3 train and 2 val images, zoo's list pointed at their hashes."""
    files = {
        f"train/{WNIDS[0]}/a.JPEG": _jpeg((200, 10, 10)),
        f"train/{WNIDS[3]}/b.JPEG": _jpeg(90, mode="L"),  # greyscale
        f"train/{WNIDS[9]}/c.JPEG": _jpeg((10, 10, 200)),
        f"val/{WNIDS[0]}/d.JPEG": _jpeg((10, 200, 10)),
        f"val/{WNIDS[5]}/e.JPEG": _jpeg((250, 250, 250)),
    }
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    return write_tiny_imagenette(tmp_path, monkeypatch, files)


def test_registered_as_a_three_channel_classification_dataset():
    info = dataset_info("imagenette", "classification")
    assert info.in_chans == 3 and info.input_size == (128, 128)
    assert info.splits == ("train", "val") and info.num_classes == 10
    assert info.classes[0] == "tench" and info.classes[9] == "parachute"


def test_layout_labels_and_greyscale(tiny):
    root, _ = tiny
    train = imagenette.load_split("train", str(root.parent))
    assert train.images.shape == (3, 3, 128, 128) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 3, 9]  # sorted paths, labels from the wnid folder
    grey = train.images[1].float()
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # converted to RGB
    assert abs(grey.mean().item() - 90) < 3
    assert train.images[0, 0].float().mean() > 150  # red stays red: channel order kept
    val = imagenette.load_split("val", str(root.parent))
    assert val.labels.tolist() == [0, 5]


def test_the_decoded_cache_is_used_then_rebuilt_when_a_file_changes(tiny, monkeypatch):
    root, write_list = tiny
    imagenette.load_split("train", str(root.parent))
    cached = list((root.parents[1] / "cache" / "imagenette").glob("train-*.safetensors"))
    assert len(cached) == 1

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache is current")

    with monkeypatch.context() as m:
        m.setattr(imagenette, "decode", no_decoding)
        again = imagenette.load_split("train", str(root.parent))
    assert again.images[0, 0].float().mean() > 150
    (root / f"train/{WNIDS[0]}/a.JPEG").write_bytes(_jpeg((10, 10, 10)))  # the file changes ...
    write_list()  # ... and so does the list it is checked against
    changed = imagenette.load_split("train", str(root.parent))
    assert changed.images[0, 0].float().mean() < 30
    after = list((root.parents[1] / "cache" / "imagenette").glob("train-*.safetensors"))
    assert len(after) == 1 and after != cached  # a new cache, the stale one removed


def test_a_changed_file_is_named(tiny):
    root, _ = tiny
    path = root / f"train/{WNIDS[9]}/c.JPEG"
    path.write_bytes(_jpeg((0, 0, 0)))  # not what the list says
    with pytest.raises(DataFileError, match=r"c\.JPEG: sha256 .* differs"):
        imagenette.load_split("train", str(root.parent))


def test_a_missing_file_is_named(tiny):
    root, _ = tiny
    (root / f"val/{WNIDS[5]}/e.JPEG").unlink()
    with pytest.raises(DataFileError, match=r"e\.JPEG is missing"):
        imagenette.load_split("val", str(root.parent))


def test_a_corrupt_jpeg_is_named(tiny):
    root, write_list = tiny
    path = root / f"val/{WNIDS[0]}/d.JPEG"
    path.write_bytes(path.read_bytes()[:200])  # truncated
    write_list()  # listed as it is now: the decoder, not the hash, finds it
    with pytest.raises(DataFileError, match=r"d\.JPEG: cannot decode"):
        imagenette.load_split("val", str(root.parent))


def test_a_wrong_size_is_named(tiny):
    root, write_list = tiny
    (root / f"val/{WNIDS[0]}/d.JPEG").write_bytes(_jpeg((1, 2, 3), size=(160, 120)))
    write_list()
    with pytest.raises(DataFileError, match=r"d\.JPEG is \(120, 160\) pixels"):
        imagenette.load_split("val", str(root.parent))


def test_not_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(
        DatasetNotFoundError, match=r"Imagenette not found; looked for train/ and val/ in: .*nowhere"
    ):
        imagenette.load_split("train", str(tmp_path / "nowhere"))


@pytest.mark.skipif(
    DATA_DIR is None or not (DATA_DIR / "imagenette").is_dir(),
    reason="needs ZOO_DATA_DIR/imagenette (CI: ../shared/data)",
)
def test_the_real_copy_has_the_official_counts():
    counts = {s: len(imagenette.split_files(s)) for s in imagenette.SPLITS}
    assert counts == {"train": 9469, "val": 3925}
    val = imagenette.load_split("val", str(DATA_DIR))
    assert torch.bincount(val.labels).tolist() == [387, 395, 357, 386, 409, 394, 389, 419, 399, 390]


def test_a_file_touched_in_place_rebuilds_the_cache(tiny, monkeypatch):
    """The cache key covers each file's size and modification time, not only zoo's list."""
    import os

    root, _ = tiny
    imagenette.load_split("val", str(root.parent))
    decoded = []
    real = imagenette.decode
    monkeypatch.setattr(imagenette, "decode", lambda path: decoded.append(path) or real(path))
    imagenette.load_split("val", str(root.parent))
    assert decoded == []  # current: nothing decoded
    path = root / f"val/{WNIDS[5]}/e.JPEG"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, a new time
    imagenette.load_split("val", str(root.parent))
    assert len(decoded) == 2  # the split decoded again, its files re-checked against the list
