"""BCCD blood-cell detection (Pascal VOC layout; 364 images of 640x480; RBC, WBC, Platelets).

Found in, in order: ``data_dir`` and ``$ZOO_DATA_DIR``, each as ``<dir>/bccd/BCCD``,
``<dir>/BCCD`` or ``<dir>`` itself, then the user cache; where the network allows, the files
are downloaded there from the public BCCD_Dataset repository at a fixed commit. Registered as
``bccd``; its transforms are the generic ones of ``zoo.data.detection``.

Box convention: VOC gives 1-based pixel indices, both ends inclusive, so pixel ``xmin``..``xmax``
covers the continuous 0-based interval ``[xmin - 1, xmax]``. Boxes here are that interval,
xyxy float32 in pixels (``x2 - x1`` is the width in pixels), which is what torchvision's box
ops and the COCO evaluator expect. Boxes with ``xmax <= xmin`` or ``ymax <= ymin`` in the file
(two of them, in BloodImage_00338 and BloodImage_00343) are dropped with a warning.

A split's files are checked against the SHA256 list shipped with zoo (``zoo.data.integrity``)
when it is loaded. Images are decoded once into memory (uint8, about 0.9 MB each) and kept.
"""

from __future__ import annotations

import os
import secrets
import shutil
import urllib.request
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from .classification import SHIPPED_DIR, DatasetNotFoundError, cache_dir, verify_shipped
from .integrity import verify_files
from .registry import DataFileError, DatasetInfo, register_dataset

CLASSES = ("RBC", "WBC", "Platelets")
SPLITS = ("train", "val", "trainval", "test")
# Per-channel statistics of the trainval images (scaled to [0, 1]).
MEAN = (0.7371, 0.6959, 0.7153)
STD = (0.0606, 0.1020, 0.0754)
SOURCE_COMMIT = "d272fb14cdff6e473fafeeeba32aba5f560e9e43"
SOURCE_URL = f"https://raw.githubusercontent.com/Shenggan/BCCD_Dataset/{SOURCE_COMMIT}/BCCD"
# The test split ships with the repository (MIT), so published weights re-evaluate offline.
SHIPPED = SHIPPED_DIR / "bccd" / "BCCD"
IMAGE_SIZE = (480, 640)
HOW_TO_GET = (
    f"clone https://github.com/Shenggan/BCCD_Dataset (commit {SOURCE_COMMIT}) and pass its BCCD "
    "folder's parent as --data-dir (or set ZOO_DATA_DIR)"
)
FIX = (
    f"Restore it from BCCD_Dataset at commit {SOURCE_COMMIT[:8]} (or delete the folder to download it again)"
)


# -- finding the files ------------------------------------------------------------------------


def _candidate_dirs(data_dir: str | None) -> list[Path]:
    roots = [Path(d) for d in (data_dir, os.environ.get("ZOO_DATA_DIR")) if d]
    dirs = []
    for r in roots:
        dirs += [r / "bccd" / "BCCD", r / "BCCD", r]
    dirs.append(cache_dir() / "bccd" / "BCCD")  # where a download goes
    return list(dict.fromkeys(dirs))


def _is_bccd(folder: Path, splits: tuple[str, ...] = SPLITS) -> bool:
    return all((folder / "ImageSets" / "Main" / f"{s}.txt").is_file() for s in splits)


def find_root(data_dir: str | None = None, download: bool = True, split: str | None = None) -> Path:
    """The BCCD folder (holding Annotations/, JPEGImages/, ImageSets/).

    For ``split="test"`` the copy shipped in ``datasets/bccd`` is the last resort before a download.
    """
    looked = _candidate_dirs(data_dir)
    for folder in looked:
        if _is_bccd(folder):
            return folder
    if split == "test" and _is_bccd(SHIPPED, ("test",)):
        verify_shipped(SHIPPED.parent)
        return SHIPPED
    looked.append(SHIPPED)
    error = "download=False"
    if download:
        try:
            return _download(cache_dir() / "bccd" / "BCCD")
        except OSError as err:  # offline (URLError is an OSError)
            error = f"{type(err).__name__}: {err}"
    where = "\n  ".join(str(p) for p in looked)
    raise DatasetNotFoundError(
        f"BCCD not found. Looked for ImageSets/Main/{{{','.join(SPLITS)}}}.txt in:\n  {where}\n"
        f"and the download failed ({error}).\nTo get it: {HOW_TO_GET}."
    )


def _fetch(url: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=30) as response, open(dst, "wb") as f:
        shutil.copyfileobj(response, f)


def _download(dst: Path) -> Path:
    """Every file of the pinned commit into a temporary folder, then renamed into place. The
    folder's name is this download's own, so two runs downloading at once never mix files; a
    failed download removes its folder."""
    tmp = dst.with_name(f"{dst.name}.{secrets.token_hex(4)}.partial")
    try:
        for split in SPLITS:
            _fetch(f"{SOURCE_URL}/ImageSets/Main/{split}.txt", tmp / "ImageSets" / "Main" / f"{split}.txt")
        ids = sorted({i for s in SPLITS for i in _read_ids(tmp, s)})
        for i in ids:
            _fetch(f"{SOURCE_URL}/Annotations/{i}.xml", tmp / "Annotations" / f"{i}.xml")
            _fetch(f"{SOURCE_URL}/JPEGImages/{i}.jpg", tmp / "JPEGImages" / f"{i}.jpg")
        os.replace(tmp, dst)  # atomic: a half-downloaded folder is never taken for data
    except OSError:
        if not _is_bccd(dst):
            raise
        # else another download finished first: its files are the same commit's
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already, unless this one failed or lost
    return dst


def _read_ids(root: Path, split: str) -> list[str]:
    return (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


# -- parsing ------------------------------------------------------------------------------------


def parse_annotation(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[list[float]]]:
    """(boxes (K, 4) 0-based xyxy, labels (K,), the dropped degenerate boxes as written in the file).

    Anything unreadable (malformed XML, a missing ``<size>`` or coordinate, a value that is not
    a number) is a ``DataFileError`` naming the file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataFileError(f"{path}: malformed XML ({err})") from None
    width, height = _number(path, root, "size/width"), _number(path, root, "size/height")
    boxes, labels, dropped = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in CLASSES:
            raise DataFileError(f"{path}: unknown class {name!r}; expected one of {CLASSES}")
        xmin, ymin, xmax, ymax = (_number(path, obj, f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax"))
        if xmax <= xmin or ymax <= ymin:
            dropped.append([xmin, ymin, xmax, ymax])
            continue
        boxes.append([max(xmin - 1, 0.0), max(ymin - 1, 0.0), min(xmax, width), min(ymax, height)])
        labels.append(CLASSES.index(name))
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
        dropped,
    )


def annotated_size(path: Path) -> tuple[int, int]:
    """(height, width) that the annotation file says its image has."""
    root = ET.parse(path).getroot()
    return int(_number(path, root, "size/height")), int(_number(path, root, "size/width"))


def _number(path: Path, node: ET.Element, key: str) -> float:
    text = node.findtext(key)
    if text is None:
        raise DataFileError(f"{path}: no <{key.replace('/', '><')}> element")
    try:
        return float(text)
    except ValueError:
        raise DataFileError(f"{path}: <{key.rsplit('/', 1)[-1]}> is {text!r}, not a number") from None


def _read_jpeg(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 through Pillow (torchvision.io's decoders are deprecated since 0.29)."""
    try:
        with Image.open(path) as image:
            return pil_to_tensor(image.convert("RGB"))
    except OSError as err:  # truncated or not an image (PIL's UnidentifiedImageError is an OSError)
        raise DataFileError(f"{path}: cannot read the image ({err})") from None


class BCCDDataset:
    """One split in memory. ``dataset[i]`` is ``(image uint8 (3, H, W), {"boxes", "labels"})``."""

    classes = list(CLASSES)
    mean, std = MEAN, STD

    def __init__(self, split: str, data_dir: str | None = None, download: bool = True):
        if split not in SPLITS:
            raise ValueError(f"BCCD split must be one of {SPLITS}, got {split!r}")
        self.root = find_root(data_dir, download, split)
        self.split = split
        # the split's list, then every file it names, against zoo's SHA256 list
        verify_files("bccd", self.root, [self.root / "ImageSets" / "Main" / f"{split}.txt"], FIX)
        self.ids = _read_ids(self.root, split)
        names = [
            f"{sub}/{i}.{ext}"
            for i in self.ids
            for sub, ext in (("Annotations", "xml"), ("JPEGImages", "jpg"))
        ]
        verify_files("bccd", self.root, [self.root / n for n in names], FIX)
        self.images, self.targets, dropped = [], [], {}
        for i in self.ids:
            xml, jpeg = self.root / "Annotations" / f"{i}.xml", self.root / "JPEGImages" / f"{i}.jpg"
            boxes, labels, bad = parse_annotation(xml)
            if bad:
                dropped[i] = bad
            image, (height, width) = _read_jpeg(jpeg), annotated_size(xml)
            if tuple(image.shape[-2:]) != (height, width):
                raise DataFileError(
                    f"{jpeg} is {image.shape[-1]}x{image.shape[-2]} (WxH), but {xml} says {width}x{height}"
                )
            self.images.append(image)
            self.targets.append({"boxes": boxes, "labels": labels})
        if dropped:
            listing = "; ".join(f"{i}: {b}" for i, b in dropped.items())
            warnings.warn(
                f"BCCD {split}: dropped {sum(map(len, dropped.values()))} zero-size box(es) "
                f"(xmin, ymin, xmax, ymax as in the file): {listing}",
                stacklevel=2,
            )
        self.dropped = dropped

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.images[index], self.targets[index]


INFO = DatasetInfo(
    name="bccd",
    task="detection",
    classes=CLASSES,
    in_chans=3,
    mean=MEAN,
    std=STD,
    splits=SPLITS,
    input_size=IMAGE_SIZE,
)
register_dataset(INFO, BCCDDataset)
