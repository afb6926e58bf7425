"""Tasks: what differs between classification, segmentation and detection.

The training loop and the evaluator are shared; a task supplies the data, the loss, the
metrics and any post-processing. A task takes its dataset from the dataset registry
(``zoo.data.registry``) by name and works with any registered dataset of its kind; it never
imports a concrete dataset module. Register a task class with ``@register_task``; its name
must be one of ``zoo._tasks.TASKS``, the list the model registry checks against too. What the
commands do with a task's trained models (``zoo predict``, ``zoo export``, ``zoo explain``,
eval.py's pictures and printout) is the task's ``TaskUse`` in ``zoo.tasks_use``, a layer above.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchmetrics
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex
from torchmetrics.detection import MeanAveragePrecision

from .._tasks import HFLIP_SUFFIX, HFLIP_TTA_TASKS, TASKS
from ..config import ConfigError, DataConfig, RunConfig
from ..data import segmentation
from ..data.batch_aug import BatchAugment
from ..data.detection import DetectionTransform, collate_detection
from ..data.loader import InMemoryLoader, SampleLoader
from ..data.registry import DatasetInfo, dataset_info, load_dataset

_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    if cls.name not in TASKS:
        raise ValueError(f"task {cls.name!r} is not one of zoo._tasks.TASKS {TASKS}; add it there")
    if cls.name in _TASKS:
        raise ValueError(f"task {cls.name!r} is already registered")
    _TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(_TASKS)}")
    return _TASKS[name]()


def list_tasks() -> list[str]:
    return sorted(_TASKS)


# The data keys every task reads; a task adds the augmentation keys it reads in ``data_keys``.
COMMON_DATA_KEYS = frozenset(
    {"dataset", "data_dir", "train_split", "eval_split", "batch_size", "eval_batch_size"}
)


class Task:
    """Interface. ``batch`` is whatever the task's loaders yield."""

    name = ""
    primary_metric = ""  # the headline number, compared by eval.py --all
    tolerance = 0.0  # how far a re-measured metric may drift from the recorded one
    published_metrics: tuple[str, ...] = ()  # what a published weight's manifest entry records
    metric_scale = 1.0  # one point of the metrics in their own unit: 1 for percent, 0.01 for a fraction
    eval_batch_size = 8  # eval.py's default: what fits in memory at the task's image sizes
    data_keys: frozenset[str] = frozenset()  # the data.* keys it reads besides COMMON_DATA_KEYS

    def check_data_config(self, data: DataConfig) -> None:
        """Refuse a data.* key this task ignores but the config sets (to other than its default):
        it would change nothing, which the config's author did not mean."""
        default = DataConfig()
        read = COMMON_DATA_KEYS | self.data_keys
        ignored = [
            f"data.{f.name}={getattr(data, f.name)!r}"
            for f in dataclasses.fields(DataConfig)
            if f.name not in read and getattr(data, f.name) != getattr(default, f.name)
        ]
        if ignored:
            raise ConfigError(
                f"{', '.join(ignored)}: the {self.name} task does not read "
                f"{'this key' if len(ignored) == 1 else 'these keys'}; it reads data.{{"
                f"{', '.join(sorted(self.data_keys))}}} besides the common ones. Remove "
                f"{'it' if len(ignored) == 1 else 'them'}."
            )

    def dataset(self, name: str) -> DatasetInfo:
        """The registered dataset ``name``, which must be of this task's kind."""
        return dataset_info(name, self.name)

    def build_loaders(self, cfg: RunConfig, rank: int = 0, world: int = 1) -> tuple[Any, Any, DatasetInfo]:
        """(train loader, eval loader, the dataset's description)."""
        raise NotImplementedError

    def build_eval_loader(
        self,
        dataset: str,
        split: str,
        data_dir: str | None,
        batch_size: int,
        input_spec: dict | None = None,
    ) -> tuple[Any, DatasetInfo]:
        """A loader over ``split`` without augmentation, and the dataset's description;
        ``input_spec`` (``{"mean": ..., "std": ...}``, a weight's preprocessing) replaces the
        dataset's own normalisation."""
        raise NotImplementedError

    def batch_size(self, batch) -> int:
        return len(batch[0])

    def to_device(self, batch, device: torch.device, channels_last: bool):
        """For (images, targets) tensor batches; tasks with other batches override it."""
        x, y = batch
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(device, non_blocking=True)

    def loss(self, model: nn.Module, batch, cfg: RunConfig) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, info: DatasetInfo, hflip_tta: bool = False) -> torchmetrics.MetricCollection:
        """``hflip_tta``: also measure with test-time flips, under metric names ending in
        ``HFLIP_SUFFIX`` (tasks in ``HFLIP_TTA_TASKS`` only)."""
        raise NotImplementedError

    def _refuse_hflip_tta(self, hflip_tta: bool) -> None:
        if hflip_tta:
            raise ValueError(
                f"test-time flips (hflip_tta) are measured for {', '.join(HFLIP_TTA_TASKS)}, not {self.name}"
            )

    def eval_step(self, model: nn.Module, batch, metrics: torchmetrics.MetricCollection) -> None:
        raise NotImplementedError

    def summarize(self, values: dict[str, torch.Tensor], info: DatasetInfo) -> dict[str, Any]:
        """Turn computed torchmetrics values into plain JSON-able numbers (percent where usual)."""
        raise NotImplementedError


TOP1_HFLIP = "top1" + HFLIP_SUFFIX  # classification's top-1 with test-time flips


def _eval_info(info: DatasetInfo, input_spec: dict | None) -> DatasetInfo:
    return info if input_spec is None else info.with_normalization(input_spec["mean"], input_spec["std"])


@register_task
class ClassificationTask(Task):
    name = "classification"
    primary_metric = "top1"
    tolerance = 0.1  # percentage points; CPU kernels may differ in the last bits across machines
    published_metrics = ("top1", "top5")
    eval_batch_size = 250  # small images
    data_keys = frozenset({"crop_padding", "hflip", "random_erasing", "rrc_scale", "train_size"})

    def build_loaders(self, cfg, rank=0, world=1):
        d = cfg.data
        self.check_data_config(d)
        info = self.dataset(d.dataset)
        train = load_dataset(d.dataset, d.train_split, d.data_dir or None)
        augment = BatchAugment(
            info.mean,
            info.std,
            d.crop_padding,
            d.hflip,
            d.random_erasing,
            rrc_scale=tuple(d.rrc_scale),
            size=(d.train_size, d.train_size),
        )
        train_loader = InMemoryLoader(train, d.batch_size, True, cfg.train.seed, augment, rank, world)
        eval_loader, info = self.build_eval_loader(
            d.dataset, d.eval_split, d.data_dir or None, d.eval_batch_size
        )
        return train_loader, eval_loader, info

    def build_eval_loader(self, dataset, split, data_dir, batch_size, input_spec=None):
        info = _eval_info(self.dataset(dataset), input_spec)
        data = dataclasses.replace(load_dataset(dataset, split, data_dir), mean=info.mean, std=info.std)
        size = (input_spec or {}).get("input_size")  # a weight's: its images resized to it
        return InMemoryLoader(data, batch_size, train=False, size=size), info

    def loss(self, model, batch, cfg):
        x, y = batch
        return F.cross_entropy(model(x), y, label_smoothing=cfg.train.label_smoothing)

    def metrics(self, info, hflip_tta=False):
        num_classes = info.num_classes

        def top1():
            return MulticlassAccuracy(num_classes, top_k=1, average="micro")

        metrics = {
            "top1": top1(),
            "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            "per_class": MulticlassAccuracy(num_classes, average=None),
            "confusion": MulticlassConfusionMatrix(num_classes),
        }
        if hflip_tta:
            metrics[TOP1_HFLIP] = top1()
        # Compute groups merge metrics whose states are equal after the first update() of the
        # whole collection; top1 and top1_hflip often are (a large model's first batch is as
        # often right with flips as without), and would then share one state: top1_hflip
        # would silently equal top1. eval_step updates each metric on its own, and the groups
        # stay off besides, so no later caller of metrics.update() can merge them.
        return torchmetrics.MetricCollection(metrics, compute_groups=not hflip_tta)

    def eval_step(self, model, batch, metrics):
        x, y = batch
        logits = model(x).float()
        if TOP1_HFLIP not in metrics:
            metrics.update(logits, y)
            return
        for name, metric in metrics.items():
            if name != TOP1_HFLIP:
                metric.update(logits, y)
        # The mean of the softmax over the image and its mirror image.
        probs = (logits.softmax(1) + model(x.flip(-1)).float().softmax(1)) / 2
        metrics[TOP1_HFLIP].update(probs, y)

    def summarize(self, values, info):
        classes = info.classes
        out = {
            "top1": round(100 * values["top1"].item(), 2),
            "top5": round(100 * values["top5"].item(), 2),
        }
        if TOP1_HFLIP in values:
            out[TOP1_HFLIP] = round(100 * values[TOP1_HFLIP].item(), 2)
        return {
            **out,
            "per_class_acc": {c: round(100 * v, 2) for c, v in zip(classes, values["per_class"].tolist())},
            "confusion_matrix": values["confusion"].tolist(),
        }


@register_task
class SegmentationTask(Task):
    """Semantic segmentation: batches are (images (N, 3, H, W), masks (N, H, W) int64).

    The model returns ``{"out": logits}`` (+ ``"aux"``); pixels labelled with the dataset's
    ``ignore_index`` (CamVid's void) count in neither the loss nor the metrics. Metrics are
    accumulated over the whole split (one confusion matrix), not averaged per image.
    """

    name = "segmentation"
    primary_metric = "miou"
    tolerance = 0.1  # percentage points
    published_metrics = ("miou", "pixel_acc")
    aux_weight = 0.4  # weight of the auxiliary head's loss, as in torchvision's reference recipe
    data_keys = frozenset({"crop_size", "scale_range", "hflip", "class_weights"})

    def build_loaders(self, cfg, rank=0, world=1):
        d = cfg.data
        self.check_data_config(d)
        info = self.dataset(d.dataset)
        crop_size = d.crop_size or list(info.input_size)
        scale_range = d.scale_range or [1.0, 1.0]
        if len(crop_size) != 2 or len(scale_range) != 2:
            raise ConfigError(
                f"data.crop_size {crop_size} and data.scale_range {scale_range} need two values each"
            )
        if d.class_weights and len(d.class_weights) != info.num_classes:
            raise ConfigError(
                f"data.class_weights needs {info.num_classes} values ({d.dataset}), got {len(d.class_weights)}"
            )
        train = load_dataset(d.dataset, d.train_split, d.data_dir or None)
        augment = segmentation.train_transform(
            crop_size, scale_range, info.mean, info.std, info.input_size, self._ignore(info), d.hflip
        )
        train_loader = SampleLoader(
            train, d.batch_size, True, segmentation.collate, cfg.train.seed, augment, rank, world
        )
        eval_loader, info = self.build_eval_loader(
            d.dataset, d.eval_split, d.data_dir or None, d.eval_batch_size
        )
        return train_loader, eval_loader, info

    def build_eval_loader(self, dataset, split, data_dir, batch_size, input_spec=None):
        info = _eval_info(self.dataset(dataset), input_spec)
        data = load_dataset(dataset, split, data_dir)
        transform = segmentation.eval_transform(info.mean, info.std)
        return SampleLoader(data, batch_size, False, segmentation.collate, transform=transform), info

    @staticmethod
    def _ignore(info: DatasetInfo) -> int:
        # -100 is what cross_entropy ignores by default and no class index can be.
        return -100 if info.ignore_index is None else info.ignore_index

    def loss(self, model, batch, cfg):
        x, y = batch
        out = model(x)
        weight = None
        if cfg.data.class_weights:
            weight = torch.tensor(cfg.data.class_weights, dtype=torch.float32, device=y.device)
        ignore_index = self._ignore(self.dataset(cfg.data.dataset))

        def cross_entropy(logits):
            return F.cross_entropy(
                logits.float(),
                y,
                weight=weight,
                ignore_index=ignore_index,
                label_smoothing=cfg.train.label_smoothing,
            )

        loss = cross_entropy(out["out"])
        if "aux" in out:
            loss = loss + self.aux_weight * cross_entropy(out["aux"])
        return loss

    def metrics(self, info, hflip_tta=False):
        self._refuse_hflip_tta(hflip_tta)
        # ignore_index equal to num_classes is supported: those pixels are dropped before counting.
        n, ignore = info.num_classes, info.ignore_index
        return torchmetrics.MetricCollection(
            {
                "miou": MulticlassJaccardIndex(n, average="macro", ignore_index=ignore),
                "per_class_iou": MulticlassJaccardIndex(n, average=None, ignore_index=ignore),
                "pixel_acc": MulticlassAccuracy(n, average="micro", ignore_index=ignore),
            }
        )

    def eval_step(self, model, batch, metrics):
        x, y = batch
        # Labels rather than logits: (N, H, W) instead of (N, classes, H, W) through the metrics.
        metrics.update(model(x)["out"].argmax(1), y)

    def summarize(self, values, info):
        return {
            "miou": round(100 * values["miou"].item(), 2),
            "pixel_acc": round(100 * values["pixel_acc"].item(), 2),
            "per_class_iou": {
                c: round(100 * v, 2) for c, v in zip(info.classes, values["per_class_iou"].tolist())
            },
        }


@register_task
class DetectionTask(Task):
    """Box detection. Batches are ``(images (N, 3, H, W), [{"boxes" xyxy px, "labels"}, ...])``;
    the model returns its loss dict in train mode and torchvision-style detections in eval mode.
    Metrics are COCO-style mAP through torchmetrics (pycocotools backend), as fractions in [0, 1].
    """

    name = "detection"
    primary_metric = "map_50"
    tolerance = 0.005  # mAP as a fraction
    published_metrics = ("map", "map_50", "map_75")
    metric_scale = 0.01
    data_keys = frozenset({"crop_size", "scale_range", "hflip", "vflip"})

    def build_loaders(self, cfg, rank=0, world=1):
        d = cfg.data
        self.check_data_config(d)
        info = self.dataset(d.dataset)
        train = load_dataset(d.dataset, d.train_split, d.data_dir or None)
        transform = DetectionTransform(
            info.mean,
            info.std,
            train=True,
            crop_size=tuple(d.crop_size or info.input_size),
            scale_range=tuple(d.scale_range or (1.0, 1.0)),
            hflip=d.hflip,
            vflip=d.vflip,
            base_short_side=min(info.input_size),
        )
        train_loader = SampleLoader(
            train, d.batch_size, True, collate_detection, cfg.train.seed, transform, rank, world
        )
        eval_loader, info = self.build_eval_loader(
            d.dataset, d.eval_split, d.data_dir or None, d.eval_batch_size
        )
        return train_loader, eval_loader, info

    def build_eval_loader(self, dataset, split, data_dir, batch_size, input_spec=None):
        info = _eval_info(self.dataset(dataset), input_spec)
        data = load_dataset(dataset, split, data_dir)
        # Full images, no augmentation: boxes stay in the original pixel coordinates.
        transform = DetectionTransform(info.mean, info.std, train=False)
        return SampleLoader(data, batch_size, False, collate_detection, transform=transform), info

    def to_device(self, batch, device, channels_last):
        images, targets = batch
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, [{k: v.to(device) for k, v in t.items()} for t in targets]

    def loss(self, model, batch, cfg):
        images, targets = batch
        return sum(model(images, targets).values())

    def metrics(self, info, hflip_tta=False):
        self._refuse_hflip_tta(hflip_tta)
        return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True)

    def eval_step(self, model, batch, metrics):
        images, targets = batch
        preds = [{k: v.float() if k != "labels" else v for k, v in p.items()} for p in model(images)]
        metrics.update(preds, targets)

    def summarize(self, values, info):
        classes = info.classes
        per_class = dict.fromkeys(classes)  # None for a class absent from both predictions and targets
        for c, ap in zip(
            values["classes"].reshape(-1).tolist(), values["map_per_class"].reshape(-1).tolist()
        ):
            name = classes[c] if c < len(classes) else str(c)
            per_class[name] = None if ap < 0 else round(ap, 4)  # torchmetrics marks "no ground truth" as -1
        return {
            "map": round(values["map"].item(), 4),
            "map_50": round(values["map_50"].item(), 4),
            "map_75": round(values["map_75"].item(), 4),
            "per_class_ap": per_class,
        }
