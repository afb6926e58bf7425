"""Tasks: what differs between classification, segmentation and detection.

The training loop and the evaluator are shared; a task supplies the data, the loss, the
metrics and any post-processing. Register a task class with ``@register_task``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchmetrics
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from ..config import RunConfig
from ..data.batch_aug import BatchAugment
from ..data.classification import CLASSIFICATION_DATASETS, load_classification
from ..data.loader import InMemoryLoader

_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    if cls.name in _TASKS:
        raise ValueError(f"task {cls.name!r} is already registered")
    _TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(_TASKS)}")
    return _TASKS[name]()


class Task:
    """Interface. ``batch`` is whatever the task's loaders yield."""

    name = ""
    primary_metric = ""  # the headline number, compared by eval.py --all
    tolerance = 0.0  # how far a re-measured metric may drift from the recorded one

    def build_loaders(self, cfg: RunConfig, rank: int = 0, world: int = 1) -> tuple[Any, Any, dict]:
        """(train loader, eval loader, dataset info: classes, in_chans, mean, std, ...)."""
        raise NotImplementedError

    def build_eval_loader(
        self, dataset: str, split: str, data_dir: str | None, batch_size: int
    ) -> tuple[Any, dict]:
        raise NotImplementedError

    def batch_size(self, batch) -> int:
        return len(batch[0])

    def to_device(self, batch, device: torch.device, channels_last: bool):
        raise NotImplementedError

    def loss(self, model: nn.Module, batch, cfg: RunConfig) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, num_classes: int) -> torchmetrics.MetricCollection:
        raise NotImplementedError

    def eval_step(self, model: nn.Module, batch, metrics: torchmetrics.MetricCollection) -> None:
        raise NotImplementedError

    def summarize(self, values: dict[str, torch.Tensor], info: dict) -> dict[str, Any]:
        """Turn computed torchmetrics values into plain JSON-able numbers (percent where usual)."""
        raise NotImplementedError


@register_task
class ClassificationTask(Task):
    name = "classification"
    primary_metric = "top1"
    tolerance = 0.1  # percentage points; CPU kernels may differ in the last bits across machines

    def build_loaders(self, cfg, rank=0, world=1):
        d = cfg.data
        if d.dataset not in CLASSIFICATION_DATASETS:
            raise ValueError(
                f"data.dataset {d.dataset!r} is not a classification dataset {CLASSIFICATION_DATASETS}"
            )
        train = load_classification(d.dataset, d.train_split, d.data_dir or None)
        augment = BatchAugment(train.mean, train.std, d.crop_padding, d.hflip, d.random_erasing)
        train_loader = InMemoryLoader(train, d.batch_size, True, cfg.train.seed, augment, rank, world)
        eval_loader, info = self.build_eval_loader(
            d.dataset, d.eval_split, d.data_dir or None, d.eval_batch_size
        )
        return train_loader, eval_loader, info

    def build_eval_loader(self, dataset, split, data_dir, batch_size, input_spec=None):
        data = load_classification(dataset, split, data_dir)
        if input_spec is not None:
            data.mean, data.std = tuple(input_spec["mean"]), tuple(input_spec["std"])
        info = dict(
            classes=data.classes,
            num_classes=len(data.classes),
            in_chans=data.images.shape[1],
            input_size=list(data.images.shape[-2:]),
            mean=list(data.mean),
            std=list(data.std),
            num_samples=len(data),
        )
        return InMemoryLoader(data, batch_size, train=False), info

    def to_device(self, batch, device, channels_last):
        x, y = batch
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(device, non_blocking=True)

    def loss(self, model, batch, cfg):
        x, y = batch
        return F.cross_entropy(model(x), y, label_smoothing=cfg.train.label_smoothing)

    def metrics(self, num_classes):
        return torchmetrics.MetricCollection(
            {
                "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
                "per_class": MulticlassAccuracy(num_classes, average=None),
                "confusion": MulticlassConfusionMatrix(num_classes),
            }
        )

    def eval_step(self, model, batch, metrics):
        x, y = batch
        metrics.update(model(x).float(), y)

    def summarize(self, values, info):
        classes = info.get("classes") or [str(i) for i in range(len(values["per_class"]))]
        return {
            "top1": round(100 * values["top1"].item(), 2),
            "top5": round(100 * values["top5"].item(), 2),
            "per_class_acc": {c: round(100 * v, 2) for c, v in zip(classes, values["per_class"].tolist())},
            "confusion_matrix": values["confusion"].tolist(),
        }
