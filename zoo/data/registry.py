"""The dataset registry: each dataset module describes itself once, and tasks look it up.

A ``DatasetInfo`` is plain typed data (what a task, a checkpoint and ``eval.py`` need to know
about a dataset: its kind of task, class names, channels, normalisation, ignore index,
splits); ``register_dataset`` pairs it with the function that loads a split. A task works with
any registered dataset of its kind, so adding a dataset is one module in ``zoo/data/`` that
calls ``register_dataset`` (imported by ``zoo/data/__init__.py``) plus a config.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._manifest import FITS
from .._paths import user_cache_dir
from .._tasks import TASKS


class DataFileError(ValueError):
    """A dataset file that cannot be read as what it should be; the message names the file."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str  # one of zoo._tasks.TASKS
    classes: tuple[str, ...]  # label names, index = label
    in_chans: int
    mean: tuple[float, ...]  # per channel, images scaled to [0, 1]
    std: tuple[float, ...]
    splits: tuple[str, ...]
    input_size: tuple[int, int] = (0, 0)  # (H, W) of the images as stored; (0, 0): they vary
    ignore_index: int | None = None  # a label that counts in neither the loss nor the metrics
    palette: tuple[tuple[int, int, int], ...] = ()  # a colour per class (and void), for pictures
    # How a picture of another size becomes an input: "crop" (shorter side to the input size, then
    # a centre crop) or "squash" (both sides to the input size: the stored images were squashed)
    fit: str = "crop"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_normalization(self, mean, std) -> DatasetInfo:
        """The same dataset seen through other normalisation statistics (those of a weight)."""
        return dataclasses.replace(self, mean=tuple(mean), std=tuple(std))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], name: str = "", task: str = "") -> DatasetInfo:
        """From ``to_dict`` output, or from the untyped ``info`` dict that checkpoints and
        weights written before the registry carry (``name`` and ``task`` then come from the
        run's config, and the splits from the registry when the dataset is known)."""
        d = dict(d)
        d.setdefault("name", name)
        d.setdefault("task", task)
        if "splits" not in d:
            d["splits"] = _DATASETS[d["name"]][0].splits if d["name"] in _DATASETS else ()
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}  # num_classes, num_samples: derived
        for key in ("classes", "mean", "std", "splits", "input_size"):
            if key in d:
                d[key] = tuple(d[key])
        if "palette" in d:
            d["palette"] = tuple(tuple(c) for c in d["palette"])
        return cls(**d)


def dataset_folders(folder: str, data_dir: str | None = None) -> list[Path]:
    """Where a dataset's ``folder`` is looked for, in order: under ``data_dir`` (``--data-dir``),
    under ``$ZOO_DATA_DIR``, then in the user cache (where downloads go)."""
    parents = [data_dir, os.environ.get("ZOO_DATA_DIR"), str(user_cache_dir())]
    return [Path(p) / folder for p in parents if p]


_DATASETS: dict[str, tuple[DatasetInfo, Callable[..., Any]]] = {}


def register_dataset(info: DatasetInfo, load: Callable[[str, str | None], Any]) -> None:
    """Register ``info`` with ``load(split, data_dir)``, which returns the split's dataset."""
    if info.task not in TASKS:
        raise ValueError(f"dataset {info.name!r}: task must be one of {TASKS}, got {info.task!r}")
    if info.name in _DATASETS:
        raise ValueError(f"dataset {info.name!r} is already registered")
    if len(info.mean) != info.in_chans or len(info.std) != info.in_chans:
        raise ValueError(f"dataset {info.name!r}: mean and std need {info.in_chans} values each")
    if info.fit not in FITS:  # a weight trained on it records this, and the manifest allows only these
        raise ValueError(f"dataset {info.name!r}: fit must be one of {FITS}, got {info.fit!r}")
    _DATASETS[info.name] = (info, load)


def list_datasets(task: str | None = None) -> list[str]:
    return sorted(n for n, (info, _) in _DATASETS.items() if task is None or info.task == task)


def dataset_info(name: str, task: str | None = None) -> DatasetInfo:
    """The description of a registered dataset; with ``task``, one of that kind or an error."""
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(list_datasets())}")
    info = _DATASETS[name][0]
    if task is not None and info.task != task:
        raise ValueError(
            f"data.dataset {name!r} is a {info.task} dataset, not a {task} one "
            f"({task} datasets: {', '.join(list_datasets(task)) or 'none'})"
        )
    return info


def load_dataset(name: str, split: str, data_dir: str | None = None, task: str | None = None):
    """The ``split`` of a registered dataset, as its module's loader returns it."""
    info = dataset_info(name, task)
    if split not in info.splits:
        raise ValueError(f"{name} has no split {split!r}; its splits: {', '.join(info.splits)}")
    return _DATASETS[name][1](split, data_dir)
