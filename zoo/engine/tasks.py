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
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex
from torchmetrics.detection import MeanAveragePrecision

from ..config import RunConfig
from ..data import camvid
from ..data.batch_aug import BatchAugment
from ..data.bccd import BCCDDataset, DetectionTransform, collate_detection
from ..data.classification import CLASSIFICATION_DATASETS, load_classification
from ..data.loader import InMemoryLoader, SampleLoader

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
    eval_batch_size = 8  # eval.py's default: what fits in memory at the task's image sizes

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
        """For (images, targets) tensor batches; tasks with other batches override it."""
        x, y = batch
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(device, non_blocking=True)

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
    eval_batch_size = 250  # small images

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


@register_task
class SegmentationTask(Task):
    """Semantic segmentation on CamVid: batches are (images (N, 3, H, W), masks (N, H, W) int64).

    The model returns ``{"out": logits}`` (+ ``"aux"``); void pixels (label 11) count in
    neither the loss nor the metrics. Metrics are accumulated over the whole split (one
    confusion matrix), not averaged per image.
    """

    name = "segmentation"
    primary_metric = "miou"
    tolerance = 0.1  # percentage points
    aux_weight = 0.4  # weight of the auxiliary head's loss, as in torchvision's reference recipe

    def build_loaders(self, cfg, rank=0, world=1):
        d = cfg.data
        if d.dataset != "camvid":
            raise ValueError(f"data.dataset {d.dataset!r} is not a segmentation dataset ('camvid')")
        crop_size = d.crop_size or list(camvid.IMAGE_SIZE)
        scale_range = d.scale_range or [1.0, 1.0]
        if len(crop_size) != 2 or len(scale_range) != 2:
            raise ValueError(
                f"data.crop_size {crop_size} and data.scale_range {scale_range} need two values each"
            )
        if d.class_weights and len(d.class_weights) != len(camvid.CLASSES):
            raise ValueError(
                f"data.class_weights needs {len(camvid.CLASSES)} values, got {len(d.class_weights)}"
            )
        train = camvid.CamVid(d.train_split, d.data_dir or None)
        augment = camvid.train_transform(crop_size, scale_range, hflip=d.hflip)
        train_loader = SampleLoader(
            train, d.batch_size, True, camvid.collate, cfg.train.seed, augment, rank, world
        )
        eval_loader, info = self.build_eval_loader(
            d.dataset, d.eval_split, d.data_dir or None, d.eval_batch_size
        )
        return train_loader, eval_loader, info

    def build_eval_loader(self, dataset, split, data_dir, batch_size, input_spec=None):
        if dataset != "camvid":
            raise ValueError(f"unknown segmentation dataset {dataset!r} (known: camvid)")
        data = camvid.CamVid(split, data_dir)
        mean, std = camvid.MEAN, camvid.STD
        if input_spec is not None:
            mean, std = tuple(input_spec["mean"]), tuple(input_spec["std"])
        info = dict(
            classes=list(camvid.CLASSES),
            num_classes=len(camvid.CLASSES),
            ignore_index=camvid.VOID,
            palette=[list(c) for c in camvid.PALETTE],
            in_chans=3,
            input_size=list(camvid.IMAGE_SIZE),
            mean=list(mean),
            std=list(std),
            num_samples=len(data),
        )
        loader = SampleLoader(
            data, batch_size, False, camvid.collate, transform=camvid.eval_transform(mean, std)
        )
        return loader, info

    def loss(self, model, batch, cfg):
        x, y = batch
        out = model(x)
        weight = None
        if cfg.data.class_weights:
            weight = torch.tensor(cfg.data.class_weights, dtype=torch.float32, device=y.device)

        def cross_entropy(logits):
            return F.cross_entropy(
                logits.float(),
                y,
                weight=weight,
                ignore_index=camvid.VOID,
                label_smoothing=cfg.train.label_smoothing,
            )

        loss = cross_entropy(out["out"])
        if "aux" in out:
            loss = loss + self.aux_weight * cross_entropy(out["aux"])
        return loss

    def metrics(self, num_classes):
        # ignore_index equal to num_classes is supported: those pixels are dropped before counting.
        return torchmetrics.MetricCollection(
            {
                "miou": MulticlassJaccardIndex(num_classes, average="macro", ignore_index=camvid.VOID),
                "per_class_iou": MulticlassJaccardIndex(num_classes, average=None, ignore_index=camvid.VOID),
                "pixel_acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=camvid.VOID),
            }
        )

    def eval_step(self, model, batch, metrics):
        x, y = batch
        # Labels rather than logits: (N, H, W) instead of (N, classes, H, W) through the metrics.
        metrics.update(model(x)["out"].argmax(1), y)

    def summarize(self, values, info):
        classes = info.get("classes") or [str(i) for i in range(len(values["per_class_iou"]))]
        return {
            "miou": round(100 * values["miou"].item(), 2),
            "pixel_acc": round(100 * values["pixel_acc"].item(), 2),
            "per_class_iou": {
                c: round(100 * v, 2) for c, v in zip(classes, values["per_class_iou"].tolist())
            },
        }


DETECTION_DATASETS = ("bccd",)


@register_task
class DetectionTask(Task):
    """Box detection. Batches are ``(images (N, 3, H, W), [{"boxes" xyxy px, "labels"}, ...])``;
    the model returns its loss dict in train mode and torchvision-style detections in eval mode.
    Metrics are COCO-style mAP through torchmetrics (pycocotools backend), as fractions in [0, 1].
    """

    name = "detection"
    primary_metric = "map_50"
    tolerance = 0.005  # mAP as a fraction

    def build_loaders(self, cfg, rank=0, world=1):
        d = cfg.data
        self._check_dataset(d.dataset)
        train = BCCDDataset(d.train_split, d.data_dir or None)
        transform = DetectionTransform(
            train.mean,
            train.std,
            train=True,
            crop_size=tuple(d.crop_size or (480, 640)),
            scale_range=tuple(d.scale_range or (1.0, 1.0)),
            flip=d.hflip,
        )
        train_loader = SampleLoader(
            train, d.batch_size, True, collate_detection, cfg.train.seed, transform, rank, world
        )
        eval_loader, info = self.build_eval_loader(
            d.dataset, d.eval_split, d.data_dir or None, d.eval_batch_size
        )
        return train_loader, eval_loader, info

    def build_eval_loader(self, dataset, split, data_dir, batch_size, input_spec=None):
        self._check_dataset(dataset)
        data = BCCDDataset(split, data_dir)
        mean, std = (data.mean, data.std) if input_spec is None else (input_spec["mean"], input_spec["std"])
        info = dict(
            classes=list(data.classes),
            num_classes=len(data.classes),
            in_chans=3,
            input_size=list(data.images[0].shape[-2:]),
            mean=list(mean),
            std=list(std),
            num_samples=len(data),
        )
        # Full images, no augmentation: boxes stay in the original pixel coordinates.
        transform = DetectionTransform(mean, std, train=False)
        return SampleLoader(data, batch_size, False, collate_detection, transform=transform), info

    @staticmethod
    def _check_dataset(dataset: str) -> None:
        if dataset not in DETECTION_DATASETS:
            raise ValueError(f"data.dataset {dataset!r} is not a detection dataset {DETECTION_DATASETS}")

    def to_device(self, batch, device, channels_last):
        images, targets = batch
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, [{k: v.to(device) for k, v in t.items()} for t in targets]

    def loss(self, model, batch, cfg):
        images, targets = batch
        return sum(model(images, targets).values())

    def metrics(self, num_classes):
        return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True)

    def eval_step(self, model, batch, metrics):
        images, targets = batch
        preds = [{k: v.float() if k != "labels" else v for k, v in p.items()} for p in model(images)]
        metrics.update(preds, targets)

    def summarize(self, values, info):
        classes = info.get("classes") or []
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
