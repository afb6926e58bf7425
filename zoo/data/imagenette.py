"""Imagenette (fast.ai's 10-class subset of ImageNet), as the 128 px copy this project uses.

The folder is ``<dir>/imagenette`` for the first ``<dir>`` of: the ``data_dir`` argument,
``$ZOO_DATA_DIR``, the user cache. It holds ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``
(the official imagenette2 layout without its top folder): the official images, names and
9,469 / 3,925 split, each squashed to a square and stored at 128x128 as JPEG (the copy and
its caveats are described in ``../shared/data/README.md`` of this project's workspace). Numbers
measured on it are **not** those of the fast.ai leaderboard, which trains on the
aspect-preserving 160/320 px versions. The images are under ImageNet's terms (non-commercial
research).

The files of a split are those ``zoo/data/sha256/imagenette.sha256`` lists (the copy's own
SHA256SUMS), checked when the split is first loaded: a missing or changed file is a
``DataFileError`` that names it. Decoding 13,394 JPEGs on every run would cost more than an
epoch of a small model, so each split is decoded once into a uint8 tensor file in the user
cache (``<cache>/imagenette/<split>-<key>.safetensors``, written atomically; the key hashes
the folder, the list and every file's size and modification time, so a changed file makes a
new cache). Greyscale files (242 of them) are converted to RGB on decoding. Registered as
``imagenette`` (classification, splits ``train`` and ``val``).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torchvision.io import ImageReadMode, decode_image, read_file

from .._io import atomic_write
from .classification import DatasetNotFoundError, TensorDataset, cache_dir
from .integrity import expected_sums, verify_files
from .registry import DataFileError, DatasetInfo, dataset_folders, register_dataset

# (wnid, English name) in sorted-wnid order: the class indices 0..9, as in classes.txt.
CLASSES = (
    ("n01440764", "tench"),
    ("n02102040", "English springer"),
    ("n02979186", "cassette player"),
    ("n03000684", "chain saw"),
    ("n03028079", "church"),
    ("n03394916", "French horn"),
    ("n03417042", "garbage truck"),
    ("n03425413", "gas pump"),
    ("n03445777", "golf ball"),
    ("n03888257", "parachute"),
)
WNIDS = tuple(w for w, _ in CLASSES)
IMAGE_SIZE = (128, 128)
SPLITS = ("train", "val")
# Per-channel mean and std of the 9,469 train images (RGB, all pixels, values in [0, 1]),
# measured once with ``python -m zoo.data.imagenette --stats``.
MEAN = (0.4624, 0.4579, 0.4304)
STD = (0.2784, 0.2759, 0.2976)
CACHE_FORMAT = 1  # bump when the cache's contents change meaning
FIX = (
    "Restore the file from the 128 px Imagenette copy this project lists "
    "(zoo/data/sha256/imagenette.sha256), or point --data-dir / ZOO_DATA_DIR at a complete copy"
)


def candidate_dirs(data_dir: str | None = None) -> list[Path]:
    """Where Imagenette is looked for, in order."""
    return dataset_folders("imagenette", data_dir)


def find_root(data_dir: str | None = None) -> Path:
    """The first candidate folder holding ``train/`` and ``val/``, or a DatasetNotFoundError."""
    tried = candidate_dirs(data_dir)
    for root in tried:
        if all((root / split).is_dir() for split in SPLITS):
            return root
    raise DatasetNotFoundError(
        "Imagenette not found; looked for train/ and val/ in: "
        + ", ".join(str(p) for p in tried)
        + ". It is the 128 px copy of fast.ai's imagenette2 (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG); "
        "pass --data-dir DIR or set ZOO_DATA_DIR=DIR, where DIR/imagenette holds it."
    )


def split_files(split: str) -> list[tuple[str, int]]:
    """(path relative to the folder, label) of every file of ``split``, from zoo's list, sorted."""
    if split not in SPLITS:
        raise ValueError(f"Imagenette split must be one of {SPLITS}, got {split!r}")
    _, sums = expected_sums("imagenette")
    files = []
    for name in sorted(sums):
        part, wnid, _ = name.split("/", 2)
        if part == split:
            files.append((name, WNIDS.index(wnid)))
    return files


def cache_key(root: Path, files: list[tuple[str, int]]) -> str:
    """A hash of everything the decoded split depends on: the folder, zoo's list and each
    file's size and modification time (a file changed in place gets a new key)."""
    list_hash, _ = expected_sums("imagenette")
    h = hashlib.sha256(f"{CACHE_FORMAT} {list_hash} {root.resolve()}\n".encode())
    for name, _ in files:
        try:
            st = (root / name).stat()
        except FileNotFoundError:
            raise DataFileError(f"{root / name} is missing from imagenette in {root}. {FIX}") from None
        h.update(f"{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def decode(path: Path) -> torch.Tensor:
    """(3, 128, 128) uint8 RGB; greyscale files are converted, anything else is named."""
    try:
        image = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except RuntimeError as err:  # a truncated or corrupt file
        raise DataFileError(f"{path}: cannot decode the image ({err})") from None
    if tuple(image.shape[-2:]) != IMAGE_SIZE:
        raise DataFileError(
            f"{path} is {tuple(image.shape[-2:])} pixels; this copy of Imagenette is {IMAGE_SIZE}. {FIX}"
        )
    return image


def decode_split(root: Path, files: list[tuple[str, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.empty((len(files), 3, *IMAGE_SIZE), dtype=torch.uint8)
    for i, (name, _) in enumerate(files):
        images[i] = decode(root / name)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return images, labels


def load_split(split: str, data_dir: str | None = None, verbose: bool = True) -> TensorDataset:
    """The ``split`` as in-memory uint8 tensors, from the decoded cache when it is current."""
    root = find_root(data_dir)
    files = split_files(split)
    key = cache_key(root, files)
    cached = cache_dir() / "imagenette" / f"{split}-{key}.safetensors"
    if cached.is_file():
        tensors = load_file(cached)
        images, labels = tensors["images"], tensors["labels"]
    else:
        verify_files("imagenette", root, [root / name for name, _ in files], FIX)
        start = time.perf_counter()
        images, labels = decode_split(root, files)
        atomic_write(cached, save({"images": images, "labels": labels}))
        if verbose:
            print(
                f"imagenette {split}: decoded {len(files)} JPEGs in {time.perf_counter() - start:.1f} s "
                f"into {cached} ({cached.stat().st_size / 2**20:.0f} MiB)"
            )
        for stale in cached.parent.glob(f"{split}-*.safetensors"):  # caches of older file states
            if stale != cached:
                stale.unlink(missing_ok=True)
    return TensorDataset(images, labels, [name for _, name in CLASSES], MEAN, STD)


def train_statistics(data_dir: str | None = None) -> dict:
    """Per-channel mean and std of the train images."""
    data = load_split("train", data_dir)
    pixels = data.images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255
    return {
        "mean": [round(v, 4) for v in pixels.mean(1).tolist()],
        "std": [round(v, 4) for v in pixels.std(1).tolist()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Decode Imagenette into the cache, or measure its statistics."
    )
    parser.add_argument("--data-dir", help="where to look for imagenette/")
    parser.add_argument("--stats", action="store_true", help="print the train split's mean/std")
    args = parser.parse_args()
    for split in SPLITS:
        data = load_split(split, args.data_dir)
        print(f"imagenette {split}: {len(data)} images")
    if args.stats:
        print(train_statistics(args.data_dir))


INFO = DatasetInfo(
    name="imagenette",
    task="classification",
    classes=tuple(name for _, name in CLASSES),
    in_chans=3,
    mean=MEAN,
    std=STD,
    splits=SPLITS,
    input_size=IMAGE_SIZE,
    fit="squash",  # the copy's photos were squashed to a square: resize others the same way
)


# Run as ``python -m``, this file is a second module; the package's import has registered it.
if __name__ == "__main__":
    main()
else:
    register_dataset(INFO, lambda split, data_dir: load_split(split, data_dir))
