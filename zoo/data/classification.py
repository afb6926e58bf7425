"""Image classification datasets held in memory as uint8 tensors.

Fashion-MNIST and MNIST go through ``torchvision.datasets``; so do CIFAR-10/100 for users
who have them. Fashion-MNIST is found offline in, in order: ``data_dir`` (``--data-dir``),
``$ZOO_DATA_DIR``, the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``), and, for the test split only, the copy shipped in
this repository (``datasets/fashion-mnist``, MIT, checked against its SHA256SUMS). Where the
network allows, torchvision downloads it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torchvision.datasets.mnist import read_image_file, read_label_file

from .._io import atomic_write
from .._paths import user_cache_dir as cache_dir  # one cache for every dataset (and the weights)
from .registry import DatasetInfo, register_dataset

# The small test splits shipped beside the package in a source checkout (checked against
# their SHA256SUMS), so published weights re-evaluate offline; absent from a wheel.
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "datasets"


class DatasetNotFoundError(FileNotFoundError):
    pass


@dataclass
class TensorDataset:
    """Images (N, C, H, W) uint8 and labels (N,) int64, with the class names and the
    normalisation statistics of the training images."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class IdxSpec:
    tv_class: type
    folder: str  # torchvision's root/<folder>/raw layout
    system_dirs: tuple[str, ...]  # where OS packages put the files
    shipped: str  # folder under datasets/ in this repo ('' if none)
    how_to_get: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


_IDX = {
    "fashion_mnist": IdxSpec(
        torchvision.datasets.FashionMNIST,
        "FashionMNIST",
        ("/usr/share/datasets/fashion-mnist",),
        "fashion-mnist",
        "apt-get install -y dataset-fashion-mnist (Debian), or pass --data-dir",
        (0.2860,),
        (0.3530,),
    ),
    "mnist": IdxSpec(
        torchvision.datasets.MNIST,
        "MNIST",
        ("/usr/share/datasets/mnist",),
        "",
        "pass --data-dir pointing at a folder with the four MNIST idx files",
        (0.1307,),
        (0.3081,),
    ),
}
_CIFAR = {
    "cifar10": (torchvision.datasets.CIFAR10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": (torchvision.datasets.CIFAR100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
CLASSIFICATION_DATASETS = tuple(_IDX) + tuple(_CIFAR)
# torchvision reads CIFAR's label names from the downloaded files; these are the same names.
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
)  # fmt: skip
CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
    butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab
    crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
    lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
    oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
    possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
    spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
    train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
)


def _candidate_dirs(spec: IdxSpec, data_dir: str | None) -> list[Path]:
    dirs = [Path(d) for d in (data_dir, os.environ.get("ZOO_DATA_DIR")) if d]
    expanded = []
    for d in dirs:  # accept the folder itself, torchvision's layout, or a named subfolder
        expanded += [d, d / spec.folder / "raw", d / spec.shipped or d, d / spec.folder]
    expanded += [Path(d) for d in spec.system_dirs]
    if spec.shipped:
        expanded.append(SHIPPED_DIR / spec.shipped)
    return list(dict.fromkeys(expanded))


def _files_for(split: str) -> list[str]:
    prefix = "train" if split == "train" else "t10k"
    return [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def verify_shipped(folder: Path) -> None:
    """Check the repository's copy against its SHA256SUMS; a corrupt copy is an error, not data."""
    sums = folder / "SHA256SUMS"
    for line in sums.read_text().splitlines():
        expected, name = line.split()
        actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if actual != expected:
            raise DatasetNotFoundError(
                f"{folder / name}: sha256 {actual} does not match SHA256SUMS ({expected})"
            )


def _stage(spec: IdxSpec, split: str, data_dir: str | None) -> Path:
    """Put decompressed idx files where torchvision expects them; return torchvision's root."""
    looked = _candidate_dirs(spec, data_dir)
    names = _files_for(split)
    for folder in looked:
        found = [_find_file(folder, n) for n in names]
        if not all(found):
            continue
        if folder == SHIPPED_DIR / spec.shipped:
            verify_shipped(folder)
        root = cache_dir() / "torchvision"
        raw = root / spec.folder / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for name, src in zip(names, found):
            dst = raw / name
            if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
                continue
            # Each writer its own temporary name: runs started together on a fresh cache (one
            # per row of a matrix) once shared one, and a run died on the other's rename.
            with gzip.open(src) if src.suffix == ".gz" else open(src, "rb") as fin:
                atomic_write(dst, fin.read())
        return root
    return _download_or_fail(spec, split, looked)


def _download_or_fail(spec: IdxSpec, split: str, looked: list[Path]) -> Path:
    root = cache_dir() / "torchvision"
    try:
        spec.tv_class(root, train=split == "train", download=True)
        return root
    except Exception as err:  # offline: say where we looked and how to get the data
        where = "\n  ".join(str(p) for p in looked)
        raise DatasetNotFoundError(
            f"{spec.folder} ({split} split) not found. Looked for {', '.join(_files_for(split))} "
            f"(optionally .gz) in:\n  {where}\nand the download failed ({type(err).__name__}: {err}).\n"
            f"To get it: {spec.how_to_get}, or set ZOO_DATA_DIR."
        ) from None


def load_classification(name: str, split: str, data_dir: str | None = None) -> TensorDataset:
    """The ``split`` ('train' or 'test') of dataset ``name`` as in-memory uint8 tensors."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name in _IDX:
        spec = _IDX[name]
        raw = _stage(spec, split, data_dir) / spec.folder / "raw"
        # torchvision's own idx readers; its dataset class insists on both splits being present.
        images_file, labels_file = (raw / f for f in _files_for(split))
        images = read_image_file(str(images_file))[:, None].contiguous()
        labels = read_label_file(str(labels_file)).long()
        return TensorDataset(images, labels, list(spec.tv_class.classes), spec.mean, spec.std)
    if name in _CIFAR:
        cls, mean, std = _CIFAR[name]
        root = data_dir or os.environ.get("ZOO_DATA_DIR") or str(cache_dir() / "torchvision")
        try:
            ds = cls(root, train=split == "train", download=not Path(root, cls.base_folder).is_dir())
        except Exception as err:
            raise DatasetNotFoundError(
                f"{name} not found under {root} and the download failed ({err}); pass --data-dir"
            ) from None
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return TensorDataset(images, torch.tensor(ds.targets), list(ds.classes), mean, std)
    raise ValueError(f"unknown classification dataset {name!r}; choose from {CLASSIFICATION_DATASETS}")


def _register() -> None:
    for name, spec in _IDX.items():
        info = DatasetInfo(
            name,
            "classification",
            tuple(spec.tv_class.classes),
            1,
            spec.mean,
            spec.std,
            ("train", "test"),
            (28, 28),
        )
        register_dataset(info, lambda split, data_dir, name=name: load_classification(name, split, data_dir))
    for name, classes in (("cifar10", CIFAR10_CLASSES), ("cifar100", CIFAR100_CLASSES)):
        _, mean, std = _CIFAR[name]
        info = DatasetInfo(name, "classification", classes, 3, mean, std, ("train", "test"), (32, 32))
        register_dataset(info, lambda split, data_dir, name=name: load_classification(name, split, data_dir))


_register()
