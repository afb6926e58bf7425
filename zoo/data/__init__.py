"""Datasets, batch augmentation and loaders."""

from .batch_aug import BatchAugment, normalize
from .bccd import BCCDDataset, DetectionTransform, collate_detection
from .camvid import CamVid
from .classification import DatasetNotFoundError, TensorDataset, load_classification
from .loader import InMemoryLoader, SampleLoader


def transforms_for(model_or_name):
    """The evaluation preprocessing recorded with the weights (``zoo.weights.eval_transforms``)."""
    from ..weights import eval_transforms  # imported late: zoo.weights is also run as a script

    return eval_transforms(model_or_name)


__all__ = [
    "transforms_for",
    "BatchAugment",
    "BCCDDataset",
    "CamVid",
    "DatasetNotFoundError",
    "DetectionTransform",
    "InMemoryLoader",
    "SampleLoader",
    "TensorDataset",
    "collate_detection",
    "load_classification",
    "normalize",
]
